defmodule Thunderbolt.Serving.Queue do
  @moduledoc """
  The batch queue of one serving: it collects requests, forms batches and
  hands each batch to an idle runner.

  ## Forming batches

  Requests wait per batch key (see `Thunderbolt.Serving.Request`). A key's
  requests leave as one batch, oldest first, up to `batch_size` rows (a
  request larger than `batch_size` runs alone and is never split), to an
  idle runner, as soon as the key has `batch_size` rows waiting or its
  oldest request has waited `batch_timeout` microseconds.

  BEAM timers count whole milliseconds, and `batch_timeout` is in
  microseconds (200 by default), so the queue does not simply sleep until
  the deadline. What wakes it depends on whether any runner is busy:

    * **No runner busy** (a lone caller, light load): nothing else is
      coming that would wake the queue, so it sleeps for the time left
      rounded *down* to milliseconds, and when that is zero it sends the
      batch out as soon as its mailbox is empty, having taken in every
      request already there. A request is never held past its deadline,
      and below 1 ms of `batch_timeout` a lone caller is sent on at once.
    * **Some runner busy** (load): the queue holds the partial batch for
      an idle runner until the deadline, which it checks on every message;
      requests arriving and the busy runner finishing are such messages.
      A safety timer rounds the time left *up* to milliseconds, so if no
      message comes at all the batch may leave up to 1 ms late.

  Spinning on the clock to honour sub-millisecond deadlines exactly would
  burn a scheduler for nothing. Measured on the 2-core development machine
  (`bench/batching_results.md`), with 64 callers of `cerebros_trained.onnx`
  and the defaults, batches averaged 23 to 29 of 32 rows; a lone caller's
  served p50 was 24 to 58 µs against 16 µs for a direct
  `Thunderbolt.run/3`, the difference being the two extra process hops.

  ## Faults

    * Before a batch leaves, requests whose caller has died or whose
      deadline has passed are dropped (counted as `:skipped`).
    * Each batch in flight is remembered with an `:atomics` claim array,
      one slot per request. Whoever answers a request, the runner with its
      result or the queue when the runner dies, first claims its slot with
      a compare-and-swap, so a request is answered once and only once.
    * The queue monitors its runners; when one dies, the callers of its
      batch get `{:error, {:runner_down, reason}}` and the runner's
      supervisor starts a new one, which reports itself ready.

  ## Queue depth

  Callers count themselves into an `:atomics` gauge before they send, and
  are refused with `:overloaded` above `max_queue`, so the mailbox cannot
  grow without bound. Each queue process has its own gauge, published with
  the rest of the serving's info (see `Thunderbolt.Serving.Directory`).
  """

  use GenServer

  alias Thunderbolt.Serving.{Config, Directory, Stats}

  @request :"$thunderbolt_serving_request"

  @typedoc """
  A queued request: reply tag (a monitor alias), caller, row count, the
  data of its `:rows` slots, deadline and the time it was sent (monotonic
  microseconds).
  """
  @type request ::
          {reference(), pid(), pos_integer(), [binary()], integer() | :infinity, integer()}

  @doc false
  @spec start_link({Config.t(), map()}) :: GenServer.on_start()
  def start_link({%Config{name: name} = config, info}) do
    info = Map.put(info, :depth, :atomics.new(1, signed: true))
    GenServer.start_link(__MODULE__, {config, info}, name: Directory.via(name))
  end

  @doc false
  # How a caller hands its request over; see Thunderbolt.Serving.run/3. The
  # caller has already counted itself into the depth gauge.
  @spec push(pid(), Thunderbolt.Serving.Request.key(), request()) :: :ok
  def push(queue, key, request) do
    send(queue, {@request, key, request})
    :ok
  end

  @impl true
  def init({config, info}) do
    # Trapping exits runs terminate/2 on shutdown, which unpublishes the queue.
    Process.flag(:trap_exit, true)
    Directory.publish(config.name, Map.put(info, :queue, self()))
    if config.distributed, do: Directory.join(config.name, self())
    Stats.put(info.stats, :runners, 0)

    state = %{
      batch_size: config.batch_size,
      batch_timeout: config.batch_timeout,
      name: config.name,
      stats: info.stats,
      depth: info.depth,
      pending: %{},
      idle: [],
      busy: %{}
    }

    {:ok, state}
  end

  @impl true
  def handle_info({@request, key, request}, state) do
    pending =
      case state.pending do
        %{^key => {rows, queue}} ->
          Map.put(state.pending, key, {rows + elem(request, 2), :queue.in(request, queue)})

        pending ->
          Map.put(pending, key, {elem(request, 2), :queue.from_list([request])})
      end

    dispatch(%{state | pending: pending}, false)
  end

  def handle_info({:done, runner}, state) do
    state = %{state | busy: Map.delete(state.busy, runner), idle: [runner | state.idle]}
    dispatch(state, false)
  end

  def handle_info(:timeout, state), do: dispatch(state, true)

  def handle_info({:runner_ready, runner}, state) do
    Process.monitor(runner)
    Stats.add(state.stats, :runners)
    dispatch(%{state | idle: [runner | state.idle]}, false)
  end

  def handle_info({:DOWN, _ref, :process, runner, reason}, state) do
    Stats.add(state.stats, :runners, -1)
    Stats.add(state.stats, :runner_crashes)

    busy =
      case Map.pop(state.busy, runner) do
        {nil, busy} ->
          busy

        {{claim, requests}, busy} ->
          fail_claimed(claim, requests, {:error, {:runner_down, reason}})
          busy
      end

    dispatch(%{state | busy: busy, idle: List.delete(state.idle, runner)}, false)
  end

  # Exits from links other than the parent (there are none by design).
  def handle_info({:EXIT, _pid, _reason}, state), do: dispatch(state, false)

  @impl true
  def terminate(_reason, state), do: Directory.withdraw(state.name, self())

  defp fail_claimed(claim, requests, reply) do
    requests
    |> Enum.with_index(1)
    |> Enum.each(fn {{tag, _caller, _rows, _data, _deadline, _sent}, i} ->
      if :atomics.compare_exchange(claim, i, 0, 1) == :ok, do: send(tag, {tag, reply})
    end)
  end

  # Sends out every batch that is ready while runners are idle, then sleeps
  # until the earliest deadline (rounded down to milliseconds).
  defp dispatch(%{idle: []} = state, _flush?), do: {:noreply, state}

  defp dispatch(%{pending: pending} = state, _flush?) when map_size(pending) == 0,
    do: {:noreply, state}

  defp dispatch(state, flush?) do
    now = System.monotonic_time(:microsecond)

    case pick(state, now, flush?) do
      {:ready, key} -> state |> send_batch(key, now) |> dispatch(flush?)
      {:wait, ms} -> {:noreply, state, ms}
    end
  end

  defp pick(state, now, flush?) do
    holding? = state.busy != %{}

    Enum.reduce(state.pending, {nil, nil, :infinity}, fn {key, {rows, queue}}, acc ->
      {:value, {_, _, _, _, _, sent}} = :queue.peek(queue)
      left = sent + state.batch_timeout - now
      {ready_key, ready_sent, wait} = acc

      cond do
        rows >= state.batch_size or left <= 0 or (flush? and not holding? and left < 1000) ->
          if ready_key == nil or sent < ready_sent,
            do: {key, sent, wait},
            else: acc

        holding? ->
          {ready_key, ready_sent, min(wait, div(left + 999, 1000))}

        true ->
          {ready_key, ready_sent, min(wait, div(left, 1000))}
      end
    end)
    |> case do
      {nil, nil, wait} -> {:wait, wait}
      {key, _sent, _wait} -> {:ready, key}
    end
  end

  defp send_batch(state, key, now) do
    {rows, queue} = Map.fetch!(state.pending, key)
    {taken, taken_rows, skipped, skipped_rows, queue} = take(queue, state.batch_size, now)

    pending =
      if :queue.is_empty(queue),
        do: Map.delete(state.pending, key),
        else: Map.put(state.pending, key, {rows - taken_rows - skipped_rows, queue})

    :atomics.sub(state.depth, 1, length(taken) + skipped)
    if skipped > 0, do: Stats.add(state.stats, :skipped, skipped)

    case taken do
      [] ->
        %{state | pending: pending}

      _ ->
        [runner | idle] = state.idle
        claim = :atomics.new(length(taken), signed: false)
        send(runner, {:batch, claim, key, taken})

        %{
          state
          | pending: pending,
            idle: idle,
            busy: Map.put(state.busy, runner, {claim, taken})
        }
    end
  end

  # Takes requests oldest first while they fit in `budget` rows (the first
  # one always fits), dropping those whose caller is gone or gave up.
  defp take(queue, budget, now), do: take(queue, budget, now, [], 0, 0, 0)

  defp take(queue, budget, now, taken, rows, skipped, skipped_rows) do
    case :queue.peek(queue) do
      :empty ->
        {Enum.reverse(taken), rows, skipped, skipped_rows, queue}

      {:value, {_tag, caller, n, _data, deadline, _sent} = request} ->
        cond do
          deadline <= now or not alive?(caller) ->
            take(:queue.drop(queue), budget, now, taken, rows, skipped + 1, skipped_rows + n)

          taken == [] or rows + n <= budget ->
            take(
              :queue.drop(queue),
              budget,
              now,
              [request | taken],
              rows + n,
              skipped,
              skipped_rows
            )

          true ->
            {Enum.reverse(taken), rows, skipped, skipped_rows, queue}
        end
    end
  end

  defp alive?(pid) when node(pid) == node(), do: Process.alive?(pid)
  defp alive?(_remote), do: true
end
