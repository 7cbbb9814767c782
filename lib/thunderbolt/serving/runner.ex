defmodule Thunderbolt.Serving.Runner do
  @moduledoc """
  One runner of a serving: it owns a session and runs the batches the queue
  gives it, one at a time, answering each caller directly.

  Given a model path or `{:binary, bytes}`, a runner loads its own session
  with `pool_size: 1`, so each runner holds exactly one native ONNX Runtime
  session and no two runners contend for one. Given a `Thunderbolt.Session`,
  the runners share it through its own native pool.

  A runner that crashes is restarted by its supervisor; the queue answers
  the callers of the batch it held (see `Thunderbolt.Serving.Queue`).
  """

  use GenServer

  alias Thunderbolt.Serving.{Batch, Config, Directory, Stats}

  @doc false
  @spec start_link({Config.t(), map(), Thunderbolt.Session.t() | nil}) :: GenServer.on_start()
  def start_link(arg), do: GenServer.start_link(__MODULE__, arg)

  @impl true
  def init({config, info, session}) do
    with {:ok, session} <- session(config, session),
         {:ok, queue, _info} <- Directory.lookup(config.name) do
      send(queue, {:runner_ready, self()})
      {:ok, %{session: session, queue: queue, stats: info.stats, scheduler: config.scheduler}}
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
  def handle_info({:batch, claim, key, requests}, state) do
    entries =
      Enum.map(requests, fn {_tag, _caller, rows, data, _deadline, _sent} -> {rows, data} end)

    {mode, results} = Batch.run(state.session, key, entries, state.scheduler)
    count(state.stats, mode, entries)
    reply(requests, results, claim, 1)
    send(state.queue, {:done, self()})
    {:noreply, state}
  end

  defp count(stats, :merged, entries) do
    Stats.add(stats, :batches)
    Stats.add(stats, :batched_requests, length(entries))
    Stats.add(stats, :rows, entries |> Enum.map(&elem(&1, 0)) |> Enum.sum())
  end

  defp count(stats, :separate, entries) do
    Stats.add(stats, :fallbacks)
    Stats.add(stats, :batches, length(entries))
    Stats.add(stats, :batched_requests, length(entries))
    Stats.add(stats, :rows, entries |> Enum.map(&elem(&1, 0)) |> Enum.sum())
  end

  defp reply([], [], _claim, _i), do: :ok

  defp reply([{tag, _, _, _, _, _} | requests], [result | results], claim, i) do
    if :atomics.compare_exchange(claim, i, 0, 1) == :ok, do: send(tag, {tag, result})
    reply(requests, results, claim, i + 1)
  end
end
