defmodule Thunderbolt.Serving do
  @moduledoc """
  Serves a model to many processes at once, merging their concurrent
  requests into batches, and across a BEAM cluster.

  Small models pay mostly per call: on a 2-core test machine one
  `Thunderbolt.run/3` of `cerebros_trained.onnx` takes about 18 µs for one
  row and about 6 µs a row in a batch of 32. A serving puts the requests
  that arrive while its runners are busy into one ONNX Runtime call and
  hands each caller back its own rows.

      children = [
        {Thunderbolt.Serving,
         name: MyModel, model: "priv/models/cerebros_trained.onnx", batch_size: 32}
      ]

      Supervisor.start_link(children, strategy: :one_for_one)

      ids = Thunderbolt.Tensor.new([Enum.to_list(1..40)], type: :s64)
      {:ok, %{"logits" => logits}} = Thunderbolt.Serving.run(MyModel, ids)

  ## How it works

  A serving is a supervisor over a queue owner (`Thunderbolt.Serving.Queue`)
  and `:runners` runners (`Thunderbolt.Serving.Runner`), each owning its own
  session. The queue and the batch runs are native code. A caller checks
  its inputs in its own process (`Thunderbolt.Serving.Request`), hands them
  to the native queue with one NIF call and waits for a message. A runner
  takes a batch once it is full, once its oldest request has waited
  `:batch_timeout` microseconds, or at once when no batch is running; it
  concatenates the rows, runs the model and sends each caller its own rows,
  all in one NIF call on its own scheduler. No request passes through a
  BEAM process other than its caller's.

  Requests merge when they ask for the same outputs and their inputs agree
  on everything but the number of rows: type and non-batch shape of each
  input whose leading dimension is dynamic in the model (the batch axis),
  and the whole tensor for an input with a fixed leading dimension.

  ## Across nodes

  Each serving joins a `:pg` group for its name. `run/3` on a node with no
  serving of that name sends the call to a node that has one, round-robin,
  through `:erpc` (`Thunderbolt.Serving.Router`). This needs the
  `:thunderbolt` application running on both nodes (it is, as a
  dependency) and the nodes connected.
  """

  use Supervisor

  alias Thunderbolt.{Error, Native, Tensor}
  alias Thunderbolt.Serving.{Config, Directory, Queue, Request, Router, Runner, Stats}

  @reply :"$thunderbolt_serving"

  @type name :: term()

  @typedoc """
  Why a call failed:

    * `:overloaded` — the queue holds `:max_queue` requests already
    * `:timeout` — no answer within the call's `:timeout`
    * `:no_serving` — no serving of that name here or on a connected node
    * `{:runner_down, reason}` — the runner running the request failed
      before answering it (`:nif_panicked`: a panic in the NIF)
    * `{:serving_down, reason}` — the serving stopped while the request waited
    * `{:nodedown, node}` — the node the call went to disconnected, and no
      other node had the serving
    * `{:remote_failure, node, {kind, reason}}` — the remote call raised
    * a `Thunderbolt.Error` — bad inputs or options, or ONNX Runtime failed
  """
  @type reason ::
          :overloaded
          | :timeout
          | :no_serving
          | {:runner_down, term()}
          | {:serving_down, term()}
          | {:nodedown, node()}
          | {:remote_failure, node(), term()}
          | Error.t()

  @doc """
  A child spec; the id is `{Thunderbolt.Serving, name}`, so one supervisor
  can hold servings for several models.
  """
  @spec child_spec(keyword()) :: Supervisor.child_spec()
  def child_spec(opts) do
    name = if Keyword.keyword?(opts), do: Keyword.get(opts, :name)

    %{
      id: {__MODULE__, name},
      start: {__MODULE__, :start_link, [opts]},
      type: :supervisor
    }
  end

  @doc """
  Starts a serving. It loads the model once to learn its inputs, so a bad
  model or option fails here, with a `Thunderbolt.Error`.

  ## Options

    * `:name` (required) — any term; `run/3` and `stats/1` take it. One
      serving per name per node.
    * `:model` (required) — a model path, `{:binary, bytes}`, or a loaded
      `Thunderbolt.Session`. A path or bytes give each runner its own
      session, loaded with `pool_size: 1`; a session is shared by the
      runners through its own pool (load it with `pool_size` at least
      `:runners`).
    * `:batch_size` — the most rows in one batch (default `32`). A single
      request with more rows runs alone.
    * `:batch_timeout` — how long, in microseconds, a request may wait for
      others to join its batch while another batch runs (default `200`).
      With no batch running, a request is sent on at once. See
      `Thunderbolt.Serving.Queue`.
    * `:runners` — how many batches run at once (default
      `System.schedulers_online()`).
    * `:max_queue` — how many requests may wait before callers get
      `{:error, :overloaded}` (default `1024`).
    * The counts are bounded: `:batch_size` at most 1,000,000 rows,
      `:batch_timeout` at most 60 s, `:runners` at most 1024 and
      `:max_queue` at most 10,000,000.
    * `:load_options` — options for `Thunderbolt.load/2`, except
      `:pool_size` (default `[]`).
    * `:scheduler` — passed to `Thunderbolt.run/3` (default `:auto`).
    * `:distributed` — join the cluster-wide `:pg` group, so other nodes
      can route calls here (default `true`).

  ## Examples

      iex> {:error, %Thunderbolt.Error{kind: :invalid_option, message: message}} =
      ...>   Thunderbolt.Serving.start_link(name: Doc, model: "m.onnx", runners: 0)
      iex> message
      ":runners must be a positive integer, got: 0"
  """
  @spec start_link(keyword()) :: Supervisor.on_start() | {:error, Error.t()}
  def start_link(opts) do
    with {:ok, config} <- Config.new(opts),
         :ok <- unused(config.name),
         {:ok, session} <- probe(config) do
      Supervisor.start_link(__MODULE__, {config, session})
    end
  end

  defp unused(name) do
    cond do
      not Directory.running?() ->
        {:error,
         Error.new(:invalid_option, "the :thunderbolt application is not started on this node")}

      Directory.registered?(name) ->
        {:error,
         Error.new(:invalid_option, "a serving named #{inspect(name)} already runs on this node")}

      true ->
        :ok
    end
  end

  defp probe(%Config{model: %Thunderbolt.Session{} = session}), do: {:ok, session}

  defp probe(%Config{model: source, load_options: opts}),
    do: Thunderbolt.load(source, Keyword.put(opts, :pool_size, 1))

  @impl true
  def init({config, session}) do
    info = %{
      stats: Stats.new(),
      inputs: session.inputs,
      outputs: session.outputs
    }

    # The first runner keeps the session loaded above; the others load their own.
    runners =
      for i <- 1..config.runners do
        Supervisor.child_spec({Runner, {config, if(i == 1, do: session)}}, id: {Runner, i})
      end

    runner_supervisor = %{
      id: :runners,
      type: :supervisor,
      start:
        {Supervisor, :start_link,
         [runners, [strategy: :one_for_one, max_restarts: 3 * config.runners, max_seconds: 5]]}
    }

    Supervisor.init([{Queue, {config, info}}, runner_supervisor], strategy: :rest_for_one)
  end

  @doc """
  Runs `inputs` through the serving `name`, as part of a batch, and returns
  this call's own rows of every output.

  `inputs` takes the forms `Thunderbolt.run/3` takes (one tensor, a list in
  input order, or a map by input name), each tensor holding one or more
  rows along axis 0. The caller blocks until its answer comes back, the
  call times out, or the serving fails it. When this node has no serving
  named `name`, the call goes to a connected node that has one.

  ## Options

    * `:timeout` — milliseconds to wait, or `:infinity` (default `5000`).
      A request not yet answered when its caller gives up is withdrawn: it
      is dropped if still queued, and its answer is not sent if running.
    * `:outputs` — output names to compute, as in `Thunderbolt.run/3`;
      only calls asking for the same outputs share a batch.

  ## Examples

      iex> Thunderbolt.Serving.run(NoSuchServing, Thunderbolt.Tensor.new([[1.0]]))
      {:error, :no_serving}
  """
  @spec run(name(), Thunderbolt.inputs(), keyword()) ::
          {:ok, %{String.t() => Tensor.t()}} | {:error, reason()}
  def run(name, inputs, opts \\ []) do
    with {:ok, timeout, outputs} <- run_options(opts) do
      case Directory.lookup(name) do
        {:ok, _queue, info} -> submit(info, inputs, outputs, timeout)
        :error -> Router.run(name, inputs, opts, timeout)
      end
    end
  end

  @doc false
  # The remote end of a routed call: the local serving only, never routed on.
  @spec run_local(name(), Thunderbolt.inputs(), keyword()) ::
          {:ok, %{String.t() => Tensor.t()}} | {:error, reason()}
  def run_local(name, inputs, opts) do
    with {:ok, timeout, outputs} <- run_options(opts) do
      case Directory.lookup(name) do
        {:ok, _queue, info} -> submit(info, inputs, outputs, timeout)
        :error -> {:error, :no_serving}
      end
    end
  end

  defp run_options([]), do: {:ok, 5_000, nil}

  defp run_options(opts) do
    with {:ok, opts} <- keyword(opts) do
      timeout = Keyword.get(opts, :timeout, 5_000)
      outputs = Keyword.get(opts, :outputs)

      cond do
        (unknown = Keyword.keys(opts) -- [:timeout, :outputs]) != [] ->
          option_error("unknown options #{inspect(unknown)}; known: [:timeout, :outputs]")

        # The range `receive ... after` takes.
        not (timeout == :infinity or (is_integer(timeout) and timeout in 0..0xFFFF_FFFF)) ->
          option_error(
            ":timeout must be an integer from 0 to 4294967295 (ms) or :infinity, got: #{inspect(timeout)}"
          )

        not (is_nil(outputs) or is_list(outputs)) ->
          option_error(":outputs must be a list of output names, got: #{inspect(outputs)}")

        true ->
          {:ok, timeout, outputs}
      end
    end
  end

  defp keyword(opts) do
    if is_list(opts) and Keyword.keyword?(opts),
      do: {:ok, opts},
      else: option_error("options must be a keyword list, got: #{inspect(opts, limit: 5)}")
  end

  defp option_error(message), do: {:error, Error.new(:invalid_option, message)}

  defp submit(info, inputs, outputs, timeout) do
    with {:ok, native_inputs, indices} <- Request.new(info.inputs, info.outputs, inputs, outputs),
         {:ok, id} <- Native.serving_submit(info.native, native_inputs, indices) do
      receive do
        {@reply, ^id, result} -> result
      after
        timeout -> withdraw(info.native, id)
      end
    end
  end

  # The request is either withdrawn, and will never be answered, or its
  # answer has been claimed and is on its way: then it is taken, so no late
  # answer is left in the caller's mailbox.
  defp withdraw(native, id) do
    case Native.serving_cancel(native, id) do
      :cancelled ->
        {:error, :timeout}

      :answered ->
        receive do
          {@reply, ^id, result} -> result
        end
    end
  end

  @doc """
  The counters of the serving `name` on this node: see
  `t:Thunderbolt.Serving.Stats.t/0`.

  ## Examples

      iex> Thunderbolt.Serving.stats(NoSuchServing)
      {:error, :no_serving}
  """
  @spec stats(name()) :: {:ok, map()} | {:error, :no_serving}
  def stats(name) do
    case Directory.lookup(name) do
      {:ok, _queue, info} ->
        {:ok, Stats.snapshot(info.stats, Native.serving_stats(info.native))}

      :error ->
        {:error, :no_serving}
    end
  end
end
