defmodule Thunderbolt.Serving.Runner do
  @moduledoc """
  One runner of a serving: it owns a session and, in a loop, hands it to
  `serving_run` (`native/thunderbolt_nif/src/serving.rs`), which takes one
  ready batch from the native queue, runs it and answers its callers
  itself, on this process's own scheduler. A batch measured to take longer
  than the session's `:max_normal_run_us` (or one not measured yet) runs
  on a dirty CPU scheduler instead.

  With nothing ready, the runner parks: the NIF notes it, and the caller
  whose request makes a batch ready wakes it with a message. A partial
  batch waiting for its `:batch_timeout` while another runner is busy is
  taken when that runner finishes, or, if that runner's batch is expected
  to end after the timeout (or has not been measured), by a parked runner
  that the queue's timer thread wakes with the same message when the
  timeout passes. BEAM timers count whole milliseconds (a 200 µs timeout
  waited about 2.1 ms on them); the runner's own GenServer timeout remains
  only as a fallback.

  Keeping runners on the BEAM's own schedulers is what makes a served call
  cheap: runners that blocked on dirty I/O threads were measured to cost
  more CPU per call than the BEAM hops they saved (`BENCHMARKS.md`), since
  the operating system had four busy threads to switch on two cores.

  Given a model path or `{:binary, bytes}`, a runner loads its own session
  with `pool_size: 1`, so each runner holds exactly one native ONNX Runtime
  session and no two runners contend for one. Given a `Thunderbolt.Session`,
  the runners share it through its own native pool.
  """

  use GenServer

  alias Thunderbolt.Native
  alias Thunderbolt.Serving.{Config, Directory}

  @doc false
  @spec start_link({Config.t(), Thunderbolt.Session.t() | nil}) :: GenServer.on_start()
  def start_link(arg), do: GenServer.start_link(__MODULE__, arg)

  @impl true
  def init({config, session}) do
    with {:ok, session} <- session(config, session),
         {:ok, queue, info} <- Directory.lookup(config.name) do
      send(queue, {:runner_ready, self()})
      send(self(), :next)
      {:ok, %{session: session, native: info.native}}
    else
      :error -> {:stop, :queue_not_found}
      {:error, error} -> {:stop, error}
    end
  end

  defp session(_config, %Thunderbolt.Session{} = session), do: {:ok, session}
  defp session(%Config{model: %Thunderbolt.Session{} = session}, nil), do: {:ok, session}

  defp session(%Config{model: source, load_options: opts}, nil),
    do: Thunderbolt.load(source, Keyword.put(opts, :pool_size, 1))

  @impl true
  def handle_info(:next, state), do: run(state)
  def handle_info(:"$thunderbolt_serving_wake", state), do: run(state)
  def handle_info(:timeout, state), do: run(state)

  # One ready batch per call, on this process's own scheduler; with nothing
  # ready the runner parks until a submit or the queue's timer wakes it,
  # with a GenServer timeout for the earliest deadline as a fallback.
  defp run(state) do
    case run_once(state.native, state.session) do
      :ok ->
        send(self(), :next)
        {:noreply, state}

      {:idle, :infinity} ->
        {:noreply, state}

      {:idle, us} ->
        {:noreply, state, div(us + 999, 1000)}

      # The serving is stopping; its supervisor ends this runner next.
      :closed ->
        {:noreply, state}
    end
  end

  @doc false
  # One serving_run call, on a dirty scheduler when the NIF asks for one;
  # the serving tests drive the queue through it without runner processes.
  @spec run_once(reference(), Thunderbolt.Session.t()) ::
          :ok | {:idle, pos_integer() | :infinity} | :closed
  def run_once(native, %Thunderbolt.Session{resource: resource}) do
    case Native.serving_run(native, resource) do
      :dirty -> Native.serving_run_dirty(native, resource)
      result -> result
    end
  end
end
