defmodule Thunderbolt.Serving.Runner do
  @moduledoc """
  One runner of a serving: it owns a session and, in a loop, hands it to
  `serving_next` (`native/thunderbolt_nif/src/serving.rs`), a NIF on a dirty
  IO scheduler, since it blocks while no batch is ready. The NIF takes
  batches from the native queue, runs them and answers their callers
  itself.

  One call runs batches back to back for up to `@busy_ms` (checked after
  each batch), or returns after `@idle_ms` without work. Staying in the NIF
  spares the process two scheduler hops per batch (measured on the 2-core
  development machine: about a quarter less CPU per served call than
  returning after each batch); returning now and then keeps the runner
  answering system messages (`:sys.suspend/1` holds it between calls). While
  blocked, the NIF checks every few milliseconds that this process is
  alive, so a runner told to stop, or killed, does not keep its scheduler
  or its supervisor waiting.

  Given a model path or `{:binary, bytes}`, a runner loads its own session
  with `pool_size: 1`, so each runner holds exactly one native ONNX Runtime
  session and no two runners contend for one. Given a `Thunderbolt.Session`,
  the runners share it through its own native pool.
  """

  use GenServer

  alias Thunderbolt.Native
  alias Thunderbolt.Serving.{Config, Directory}

  @idle_ms 100
  @busy_ms 20

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
  def handle_info(:next, state) do
    case Native.serving_next(state.native, state.session.resource, @idle_ms, @busy_ms) do
      # The serving is stopping; its supervisor ends this runner next.
      :closed -> :ok
      _ok_or_idle -> send(self(), :next)
    end

    {:noreply, state}
  end
end
