defmodule Thunderbolt.Serving.Runner do
  @moduledoc """
  One runner of a serving: it owns a session and, in a loop, asks the
  native queue for the next batch, which the NIF runs and answers itself
  (`serving_next` in `native/thunderbolt_nif/src/serving.rs`, on a dirty IO
  scheduler, since it blocks while no batch is ready).

  Each call returns after one batch, or after `@idle_ms` with no work, so
  the runner still handles system messages (`:sys.suspend/1` holds it
  between batches) and its supervisor's shutdown. While blocked, the NIF
  checks every few milliseconds that this process is alive, so a runner
  told to stop or killed does not keep a scheduler waiting.

  Given a model path or `{:binary, bytes}`, a runner loads its own session
  with `pool_size: 1`, so each runner holds exactly one native ONNX Runtime
  session and no two runners contend for one. Given a `Thunderbolt.Session`,
  the runners share it through its own native pool.
  """

  use GenServer

  alias Thunderbolt.Native
  alias Thunderbolt.Serving.{Config, Directory}

  @idle_ms 100

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
    case Native.serving_next(state.native, state.session.resource, @idle_ms) do
      # The serving is stopping; its supervisor ends this runner next.
      :closed -> :ok
      _ok_or_idle -> send(self(), :next)
    end

    {:noreply, state}
  end
end
