defmodule Thunderbolt.ModelServer do
  @moduledoc """
  A cache of loaded sessions, keyed by model path and load options.

  Loading an ONNX model takes milliseconds; running a small one takes
  microseconds. `fetch/2` returns a cached `Thunderbolt.Session` so that the
  load happens once:

      {:ok, session} = Thunderbolt.ModelServer.fetch("/srv/models/cerebros_trained.onnx")
      {:ok, %{"logits" => logits}} = Thunderbolt.run(session, ids)

  How it behaves:

    * A hit is a read of an ETS table by the calling process: no message
      to the server, and no file system call unless the file is due for a
      check (see below).
    * A miss asks the server, which loads the model in a separate process.
      Concurrent requests for a model that is loading wait for that one
      load; requests for other models are not held up.
    * At most `:max_models` sessions are kept; loading one more evicts the
      least recently used.
    * A cached model's file is checked (one `stat`) on the first use after
      `:revalidate_ms` milliseconds have passed since its last check
      (default 1000; `0` checks on every use). A file
      whose size, modification time, change time or inode differs from when
      it was loaded is loaded again; a file that has been deleted is evicted
      and reported as `{:error, {:file_not_found, path}}`. So a change is
      seen at most `:revalidate_ms` after it happens. The interval exists
      because a `stat` runs on a dirty I/O scheduler and would cost about as
      much as running a small model. Times are compared to the
      nanosecond, so a rewrite in place that keeps the size is seen too.
    * An evicted session stays valid for every process still holding it.
      Its native memory is released when the last of them lets it go.
    * `fetch_named/5` takes a name in a directory instead of a path, as
      `Thunderbolt.OnnxInference` does, and remembers the resolution and
      the session together, so its hit is one ETS read as well.

  The application starts one server under the name `Thunderbolt.ModelServer`
  with the options in `config :thunderbolt, :model_server` (for example
  `[max_models: 32]`). Every function takes the server's name as its last
  argument, for tests or for a second cache.

  Paths are used as given, made absolute; they are not confined to a
  directory. Code that takes paths from untrusted callers resolves them with
  `Thunderbolt.ModelDir.resolve/2` first, as `Thunderbolt.OnnxInference`
  does.
  """

  use GenServer

  @default_max_models 16
  @default_revalidate_ms 1000
  # Positions in the :counters array.
  @hits 1
  @misses 2
  @loads 3
  @reloads 4
  @evictions 5
  @load_errors 6
  # Positions in an ETS entry:
  # {key, session, stamp, last_used, loaded_at, checked_ms}.
  @last_used_pos 4
  @checked_pos 6
  # and in a `fetch_named/5` entry:
  # {key, path, main_key, session, checked_ms, generation, last_used}.
  @named_last_used_pos 7
  # The most remembered names (`resolve/3`) and named entries
  # (`fetch_named/5`): many spellings of one path ("./m.onnx",
  # ".//m.onnx", ...) each make an entry, so a caller sending new ones
  # would otherwise grow the tables without end. At the bound a table is
  # emptied and fills again from use.
  @max_names 4096
  # Positions in the :atomics array: the last use stamp handed out, and a
  # generation that every load and eviction moves on.
  @latest_use 1
  @generation 2

  @type server :: GenServer.name()
  @type stats :: %{
          hits: non_neg_integer(),
          misses: non_neg_integer(),
          loads: non_neg_integer(),
          reloads: non_neg_integer(),
          evictions: non_neg_integer(),
          load_errors: non_neg_integer(),
          models: non_neg_integer(),
          max_models: pos_integer()
        }

  @doc """
  Starts a model server.

  ## Options

    * `:name` — the name to register (default `Thunderbolt.ModelServer`).
    * `:max_models` — how many sessions to keep before evicting the least
      recently used (default #{@default_max_models}).
    * `:revalidate_ms` — how long a cached model is served before its file
      is checked again for changes (default #{@default_revalidate_ms}; `0`
      checks on every use).
  """
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts \\ []) do
    opts =
      Keyword.validate!(opts,
        name: __MODULE__,
        max_models: @default_max_models,
        revalidate_ms: @default_revalidate_ms
      )

    unless is_integer(opts[:max_models]) and opts[:max_models] > 0 do
      raise ArgumentError,
            ":max_models must be a positive integer, got #{inspect(opts[:max_models])}"
    end

    unless is_integer(opts[:revalidate_ms]) and opts[:revalidate_ms] >= 0 do
      raise ArgumentError,
            ":revalidate_ms must be a non-negative integer, got #{inspect(opts[:revalidate_ms])}"
    end

    GenServer.start_link(__MODULE__, opts, name: opts[:name])
  end

  @doc false
  def child_spec(opts) do
    %{
      id: Keyword.get(opts, :name, __MODULE__),
      start: {__MODULE__, :start_link, [opts]},
      type: :worker
    }
  end

  @doc """
  Returns the session for the model at `path` loaded with `load_opts`,
  loading it on first use. `load_opts` are `Thunderbolt.load/2`'s options;
  each distinct set is a separate cache entry.

  Returns `{:error, {:file_not_found, path}}` when the file is missing or not
  a regular file, `{:error, {:invalid_path, path}}` when `path` is not a
  path at all, and `{:error, %Thunderbolt.Error{}}` when loading fails
  (failures are not cached).
  """
  @spec fetch(Path.t(), keyword(), server()) ::
          {:ok, Thunderbolt.Session.t()} | {:error, term()}
  def fetch(path, load_opts \\ [], server \\ __MODULE__) do
    with {:ok, path} <- path_string(path),
         {:ok, shared} <- state(server),
         {:ok, session, _checked_ms, _last_used} <-
           checked_fetch(shared, server, path, load_opts, System.monotonic_time(:millisecond)) do
      {:ok, session}
    end
  rescue
    # The table of a server that died a moment ago, before its restart.
    ArgumentError -> {:error, {:model_server_not_running, server}}
  end

  # `fetch/3`, also answering when the file was last checked and the
  # entry's use stamp (nil when just loaded), for `fetch_named/5`.
  defp checked_fetch(%{table: table} = shared, server, path, load_opts, now_ms) do
    path = absolute(path)
    key = {path, normalize(load_opts)}

    case :ets.lookup(table, key) do
      [{^key, session, _stamp, last_used, _, checked_ms}]
      when now_ms - checked_ms < shared.revalidate_ms ->
        if last_used == :atomics.get(shared.latest, @latest_use),
          do: hit(shared, session, checked_ms, last_used),
          else: hit(shared, key, session, checked_ms, [])

      [{^key, session, stamp, _, _, _}] ->
        case stamp(path) do
          {:ok, ^stamp} -> hit(shared, key, session, now_ms, [{@checked_pos, now_ms}])
          {:ok, changed} -> miss(shared, server, key, changed, now_ms)
          :error -> gone(server, path)
        end

      [] ->
        case stamp(path) do
          {:ok, stamp} -> miss(shared, server, key, stamp, now_ms)
          :error -> {:error, {:file_not_found, path}}
        end
    end
  end

  defp hit(%{counters: counters}, session, checked_ms, last_used) do
    :counters.add(counters, @hits, 1)
    {:ok, session, checked_ms, last_used}
  end

  defp hit(%{table: table} = shared, key, session, checked_ms, updates) do
    stamp = use_stamp(shared)
    :ets.update_element(table, key, [{@last_used_pos, stamp} | updates])
    hit(shared, session, checked_ms, stamp)
  end

  defp miss(%{counters: counters}, server, key, stamp, now_ms) do
    :counters.add(counters, @misses, 1)

    with {:ok, session} <- call(server, {:load, key, stamp}),
         do: {:ok, session, now_ms, nil}
  end

  defp gone(server, path) do
    call(server, {:evict, path})
    {:error, {:file_not_found, path}}
  end

  @doc """
  `Thunderbolt.ModelDir.resolve/2`, remembered: a successful resolution of
  `model_path` in `dir` is reused for `:revalidate_ms`, like a cached
  session, so that a hot path makes no file system call. Refusals and
  missing files are never remembered. Evicting the path or finding its file
  gone forgets it, and a file found gone here also evicts its sessions.
  """
  @spec resolve(term(), String.t(), server()) ::
          {:ok, String.t()} | {:error, Thunderbolt.ModelDir.error() | term()}
  def resolve(model_path, dir, server \\ __MODULE__) do
    with {:ok, shared} <- state(server),
         {:ok, path, _checked_ms} <-
           checked_resolve(shared, server, model_path, dir, System.monotonic_time(:millisecond)) do
      {:ok, path}
    end
  rescue
    ArgumentError -> {:error, {:model_server_not_running, server}}
  end

  # `resolve/3`, also answering when the file system was last asked.
  defp checked_resolve(%{names: names} = shared, server, model_path, dir, now_ms) do
    key = {dir, model_path}

    case :ets.lookup(names, key) do
      # The lexical checks give the same answer for the same pair, so
      # only the file system's part is being reused.
      [{^key, path, checked_ms}] when now_ms - checked_ms < shared.revalidate_ms ->
        {:ok, path, checked_ms}

      remembered ->
        case Thunderbolt.ModelDir.resolve(model_path, dir) do
          {:ok, path} ->
            insert_bounded(names, {key, path, now_ms})
            {:ok, path, now_ms}

          {:error, {:file_not_found, _}} = error ->
            # The file it named is gone: so is its session.
            with [{^key, path, _}] <- remembered, do: call(server, {:evict, path})
            error

          error ->
            error
        end
    end
  end

  @doc """
  `resolve/3`, then `check` on the resolved path (`:ok` or an error to
  return), then `fetch/3`, answered as `{:ok, path, session}` and
  remembered as one entry: while the resolution and the file check behind
  it are younger than `:revalidate_ms`, and no model was loaded or evicted
  since, a repeat of the call is one ETS read. `check` must give the same
  answer for the same path.
  """
  @spec fetch_named(
          term(),
          String.t(),
          keyword(),
          (String.t() -> :ok | {:error, term()}),
          server()
        ) ::
          {:ok, String.t(), Thunderbolt.Session.t()} | {:error, term()}
  def fetch_named(model_path, dir, load_opts, check, server \\ __MODULE__) do
    with {:ok, %{named: named} = shared} <- state(server) do
      key = {dir, model_path, load_opts}
      now_ms = System.monotonic_time(:millisecond)

      case :ets.lookup(named, key) do
        [{^key, path, main_key, session, checked_ms, generation, last_used}]
        when now_ms - checked_ms < shared.revalidate_ms ->
          if generation == :atomics.get(shared.latest, @generation) do
            named_hit(shared, key, main_key, last_used)
            {:ok, path, session}
          else
            fetch_named_again(shared, server, key, check, now_ms)
          end

        _ ->
          fetch_named_again(shared, server, key, check, now_ms)
      end
    end
  rescue
    ArgumentError -> {:error, {:model_server_not_running, server}}
  end

  defp named_hit(%{counters: counters, latest: latest} = shared, key, main_key, last_used) do
    :counters.add(counters, @hits, 1)

    # As in `fetch/3`, only a model other than the one used last writes its
    # use to the table.
    if last_used != :atomics.get(latest, @latest_use) do
      stamp = use_stamp(shared)
      :ets.update_element(shared.table, main_key, {@last_used_pos, stamp})
      :ets.update_element(shared.named, key, {@named_last_used_pos, stamp})
    end
  end

  defp fetch_named_again(shared, server, {dir, model_path, load_opts} = key, check, now_ms) do
    # Read before the entries it stands for: a load or eviction after this
    # point makes the entry written below stale at once.
    generation = :atomics.get(shared.latest, @generation)

    with {:ok, path, resolved_ms} <- checked_resolve(shared, server, model_path, dir, now_ms),
         :ok <- check.(path),
         {:ok, session, fetched_ms, last_used} <-
           checked_fetch(shared, server, path, load_opts, now_ms) do
      # Due again when the older of its two checks is.
      checked_ms = min(resolved_ms, fetched_ms)
      main_key = {path, normalize(load_opts)}
      entry = {key, path, main_key, session, checked_ms, generation, last_used}
      insert_bounded(shared.named, entry)
      {:ok, path, session}
    end
  end

  defp insert_bounded(table, entry) do
    if :ets.info(table, :size) >= @max_names, do: :ets.delete_all_objects(table)
    :ets.insert(table, entry)
  end

  @doc """
  Loads a model into the cache ahead of its first use. Same as `fetch/3`,
  returning `:ok` instead of the session.
  """
  @spec preload(Path.t(), keyword(), server()) :: :ok | {:error, term()}
  def preload(path, load_opts \\ [], server \\ __MODULE__) do
    with {:ok, _session} <- fetch(path, load_opts, server), do: :ok
  end

  @doc """
  Drops every cached session of the model at `path`, whatever its load
  options. Returns `:ok`, also when nothing was cached.
  """
  @spec evict(Path.t(), server()) :: :ok | {:error, term()}
  def evict(path, server \\ __MODULE__) do
    with {:ok, path} <- path_string(path),
         {:ok, _} <- state(server),
         do: call(server, {:evict, absolute(path)})
  end

  @doc """
  The cached models, most recently used first, as plain maps:
  `%{path, load_opts, size, mtime, loaded_at}` where `mtime` is the file's
  modification time in POSIX seconds and `loaded_at` is a `DateTime`.
  """
  @spec list_models(server()) :: [map()]
  def list_models(server \\ __MODULE__) do
    case state(server) do
      {:ok, %{table: table}} ->
        table
        |> :ets.tab2list()
        |> Enum.sort_by(fn entry -> elem(entry, @last_used_pos - 1) end, :desc)
        |> Enum.map(fn {{path, opts}, _session, {size, mtime_ns, _, _}, _, loaded_at, _} ->
          mtime = Integer.floor_div(mtime_ns, 1_000_000_000)
          %{path: path, load_opts: opts, size: size, mtime: mtime, loaded_at: loaded_at}
        end)

      {:error, _} ->
        []
    end
  end

  @doc """
  Counters since the server started: `hits`, `misses`, `loads` (including
  `reloads` of changed files), `reloads`, `evictions` (least recently used,
  explicit, and of deleted files), `load_errors`, and the current number of
  `models` and the `max_models` limit.
  """
  @spec stats(server()) :: stats() | {:error, term()}
  def stats(server \\ __MODULE__) do
    with {:ok, %{table: table, counters: counters, max_models: max}} <- state(server) do
      %{
        hits: :counters.get(counters, @hits),
        misses: :counters.get(counters, @misses),
        loads: :counters.get(counters, @loads),
        reloads: :counters.get(counters, @reloads),
        evictions: :counters.get(counters, @evictions),
        load_errors: :counters.get(counters, @load_errors),
        models: :ets.info(table, :size),
        max_models: max
      }
    end
  end

  # Server

  @impl true
  def init(opts) do
    # So that terminate/2 runs on shutdown and removes the persistent term.
    Process.flag(:trap_exit, true)
    table = :ets.new(__MODULE__, [:set, :public, read_concurrency: true, write_concurrency: true])
    names = :ets.new(__MODULE__, [:set, :public, read_concurrency: true, write_concurrency: true])
    named = :ets.new(__MODULE__, [:set, :public, read_concurrency: true, write_concurrency: true])
    counters = :counters.new(6, [:write_concurrency])

    shared = %{
      table: table,
      names: names,
      named: named,
      counters: counters,
      # The last use stamp handed out, so a hit on the model used last
      # (the steady state of a hot path) need not write to the table; and
      # the generation that `fetch_named/5` entries are checked against.
      latest: :atomics.new(2, signed: true),
      max_models: opts[:max_models],
      revalidate_ms: opts[:revalidate_ms]
    }

    :persistent_term.put({__MODULE__, opts[:name]}, shared)

    {:ok, Map.merge(shared, %{name: opts[:name], loading: %{}, tasks: %{}})}
  end

  @impl true
  def handle_call({:load, key, stamp}, from, state) do
    case :ets.lookup(state.table, key) do
      # Loaded by an earlier request while this one was on its way.
      [{^key, session, ^stamp, _, _, _}] ->
        {:reply, {:ok, session}, state}

      _ ->
        case state.loading do
          %{^key => waiters} ->
            {:noreply, put_in(state.loading[key], [from | waiters])}

          _ ->
            {:noreply, start_load(state, key, stamp, from)}
        end
    end
  end

  def handle_call({:evict, path}, _from, state) do
    removed = :ets.select_delete(state.table, [{{{path, :_}, :_, :_, :_, :_, :_}, [], [true]}])
    :ets.match_delete(state.names, {:_, path, :_})
    :ets.match_delete(state.named, {:_, path, :_, :_, :_, :_, :_})
    changed(state)
    :counters.add(state.counters, @evictions, removed)
    {:reply, :ok, state}
  end

  @impl true
  def handle_info({:loaded, pid, result}, %{tasks: tasks} = state)
      when is_map_key(tasks, pid) do
    {{key, stamp, monitor}, tasks} = Map.pop(tasks, pid)
    Process.demonitor(monitor, [:flush])
    {waiters, loading} = Map.pop(state.loading, key)
    state = %{state | tasks: tasks, loading: loading}

    reply =
      case result do
        {:ok, session} ->
          reloaded? = :ets.member(state.table, key)

          entry =
            {key, session, stamp, use_stamp(state), DateTime.utc_now(),
             System.monotonic_time(:millisecond)}

          :ets.insert(state.table, entry)
          :counters.add(state.counters, @loads, 1)
          if reloaded?, do: :counters.add(state.counters, @reloads, 1)
          evict_least_recently_used(state)
          changed(state)
          {:ok, session}

        {:error, _} = error ->
          :counters.add(state.counters, @load_errors, 1)
          error
      end

    Enum.each(waiters, &GenServer.reply(&1, reply))
    {:noreply, state}
  end

  def handle_info({:DOWN, _monitor, :process, pid, reason}, %{tasks: tasks} = state)
      when is_map_key(tasks, pid) do
    {{key, _stamp, _monitor}, tasks} = Map.pop(tasks, pid)
    {waiters, loading} = Map.pop(state.loading, key)
    :counters.add(state.counters, @load_errors, 1)
    Enum.each(waiters, &GenServer.reply(&1, {:error, {:load_crashed, reason}}))
    {:noreply, %{state | tasks: tasks, loading: loading}}
  end

  def handle_info(_message, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, state) do
    :persistent_term.erase({__MODULE__, state.name})
    :ok
  end

  defp start_load(state, {path, opts} = key, stamp, from) do
    parent = self()

    # A plain monitored process rather than a linked Task: a crash while
    # loading must fail the waiting callers, not the cache.
    {pid, monitor} =
      spawn_monitor(fn ->
        result =
          try do
            Thunderbolt.load(path, opts)
          rescue
            e -> {:error, Thunderbolt.Error.new(:load, Exception.message(e))}
          end

        send(parent, {:loaded, self(), result})
      end)

    %{
      state
      | tasks: Map.put(state.tasks, pid, {key, stamp, monitor}),
        loading: Map.put(state.loading, key, [from])
    }
  end

  defp evict_least_recently_used(%{table: table, max_models: max, counters: counters} = state) do
    excess = :ets.info(table, :size) - max

    if excess > 0 do
      table
      |> :ets.select([{{:"$1", :_, :_, :"$2", :_, :_}, [], [{{:"$2", :"$1"}}]}])
      |> Enum.sort()
      |> Enum.take(excess)
      |> Enum.each(fn {_last_used, key} ->
        :ets.delete(table, key)
        :ets.match_delete(state.named, {:_, :_, key, :_, :_, :_, :_})
      end)

      :counters.add(counters, @evictions, excess)
    end
  end

  # Client helpers

  defp state(server) do
    case :persistent_term.get({__MODULE__, server}, nil) do
      nil -> {:error, {:model_server_not_running, server}}
      shared -> {:ok, shared}
    end
  end

  defp call(server, request) do
    GenServer.call(server, request, :infinity)
  catch
    :exit, reason -> {:error, {:model_server_not_running, {server, reason}}}
  end

  # An absolute path as it is: the hot path's only case, without
  # `Path.type/1`'s look at the operating system.
  # Before anything that would raise on a value that is not a path (nil, a
  # number, a list that is not chardata).
  defp path_string(path) when is_binary(path), do: {:ok, path}

  defp path_string(path) when is_list(path) do
    {:ok, IO.chardata_to_string(path)}
  rescue
    _ in [ArgumentError, UnicodeConversionError] -> {:error, {:invalid_path, path}}
  end

  defp path_string(path), do: {:error, {:invalid_path, path}}

  defp absolute("/" <> _ = path), do: path

  # `path` is a string by now (`path_string/1`, or a resolved name).
  defp absolute(path),
    do: if(Path.type(path) == :absolute, do: path, else: Path.expand(path))

  defp normalize([]), do: []
  # Not a proper list: kept as it is, for `Thunderbolt.load/2` to refuse.
  defp normalize(opts) when is_list(opts),
    do: if(List.improper?(opts), do: opts, else: Enum.sort(opts))

  defp normalize(opts), do: opts

  defp use_stamp(%{latest: latest}) do
    stamp = :erlang.unique_integer([:monotonic])
    :atomics.put(latest, @latest_use, stamp)
    stamp
  end

  # After the tables changed: a `fetch_named/5` entry is written under the
  # generation read before its lookups, so one that may hold what the
  # tables held before is never taken for current from here on.
  defp changed(%{latest: latest}), do: :atomics.add(latest, @generation, 1)

  # What identifies the file's contents without reading them.
  # {size, mtime_ns, ctime_ns, inode}: nanosecond times, since Erlang's
  # file info has whole seconds and would miss a same-size rewrite.
  defp stamp(path) do
    case Thunderbolt.Native.file_stamp(path) do
      {_size, _mtime_ns, _ctime_ns, _inode} = stamp -> {:ok, stamp}
      nil -> :error
    end
  end
end
