defmodule Thunderbolt.Serving.Queue do
  @moduledoc """
  The process that owns a serving's native batch queue: it creates the
  queue, publishes it (see `Thunderbolt.Serving.Directory`), counts the
  runners, and closes the queue when it stops.

  The queue itself is native (`native/thunderbolt_runtime/src/batch_queue.rs`,
  behind `native/thunderbolt_nif/src/serving.rs`), so no request passes
  through this process: callers submit straight to the queue from their own
  process, and runners take batches from it (`Thunderbolt.Serving.Runner`).

  ## Forming batches

  Requests wait per batch key (see `Thunderbolt.Serving.Request`). A key's
  requests leave as one batch, oldest first, up to `batch_size` rows (a
  request larger than `batch_size` runs alone and is never split), as soon
  as the key has `batch_size` rows waiting, or its oldest request has
  waited `batch_timeout` microseconds, or no batch is running at all (so a
  lone caller is sent on at once). The queue tells a parked runner as soon
  as a batch is ready. A deadline that passes while another batch runs
  makes the waiting batch ready too: the runner that finishes takes it, or,
  when the running batch is expected to end after the deadline, a native
  timer thread wakes a parked runner at that microsecond.

  ## Faults

    * Requests whose caller has died are dropped when their batch is
      formed, and a caller that times out withdraws its request; both count
      as `:skipped` when the request was still queued.
    * Every request is answered exactly once: a runner claims a batch's
      requests before it answers them, and a caller's withdrawal succeeds
      only on a request not yet claimed.
    * A batch whose runner panicked before answering is failed by the next
      runner with `{:error, {:runner_down, :nif_panicked}}`; the runner
      process crashes too, and its supervisor starts a new one.
    * When this process stops, its `terminate/2` closes the queue with the
      stop reason: queued callers get `{:error, {:serving_down, reason}}`.
      If it is killed, the native queue, which monitors it, closes itself
      with reason `:killed`. Batches already running are still answered.

  ## Queue depth

  The native queue refuses requests with `:overloaded` once `max_queue`
  wait, so memory cannot grow without bound.
  """

  use GenServer

  alias Thunderbolt.Native
  alias Thunderbolt.Serving.{Config, Directory, Request, Stats}

  @doc false
  @spec start_link({Config.t(), map()}) :: GenServer.on_start()
  def start_link({%Config{name: name} = config, info}) do
    GenServer.start_link(__MODULE__, {config, info}, name: Directory.via(name))
  end

  @impl true
  def init({config, info}) do
    # Trapping exits runs terminate/2 on shutdown, which closes the queue.
    Process.flag(:trap_exit, true)

    native =
      Native.serving_new(%{
        batch_axes: Enum.map(info.inputs, &Request.batch_axis?(&1.shape)),
        batch_size: config.batch_size,
        batch_timeout_us: config.batch_timeout,
        max_queue: config.max_queue
      })

    Directory.publish(config.name, Map.merge(info, %{queue: self(), native: native}))
    if config.distributed, do: Directory.join(config.name, self())
    Stats.put(info.stats, :runners, 0)
    {:ok, %{name: config.name, native: native, stats: info.stats}}
  end

  @impl true
  def handle_info({:runner_ready, runner}, state) do
    Process.monitor(runner)
    Stats.add(state.stats, :runners)
    {:noreply, state}
  end

  def handle_info({:DOWN, _ref, :process, _runner, _reason}, state) do
    Stats.add(state.stats, :runners, -1)
    Stats.add(state.stats, :runner_crashes)
    {:noreply, state}
  end

  # Exits from links other than the parent (there are none by design).
  def handle_info({:EXIT, _pid, _reason}, state), do: {:noreply, state}

  @impl true
  def terminate(reason, state) do
    Native.serving_close(state.native, reason)
    Directory.withdraw(state.name, self())
  end
end
