defmodule Thunderbolt.Serving.Stats do
  @moduledoc """
  The counters of one serving. Most live in the native queue, which counts
  requests, batches and rows as it forms and runs them; the two about
  runners live in an `:atomics` array that the queue's owner updates as
  runners start and die. `Thunderbolt.Serving.stats/1` reads both without
  a message, so it never waits behind a busy serving.

      iex> stats = Thunderbolt.Serving.Stats.new()
      iex> Thunderbolt.Serving.Stats.add(stats, :runners, 2)
      iex> native = %{batches: 2, rows: 7, batched_requests: 4}
      iex> snapshot = Thunderbolt.Serving.Stats.snapshot(stats, native)
      iex> {snapshot.runners, snapshot.mean_batch_size, snapshot.mean_batch_requests}
      {2, 3.5, 2.0}
  """

  @fields [:runner_crashes, :runners]
  @indices @fields |> Enum.with_index(1) |> Map.new()

  for {field, index} <- @indices do
    defp index(unquote(field)), do: unquote(index)
  end

  @type field :: :runner_crashes | :runners

  @typedoc """
  A snapshot:

    * `:requests` — calls accepted into the queue
    * `:batches` — ONNX Runtime calls the runners made (a batch that fell
      back to one call per request counts once per call)
    * `:rows`, `:batched_requests` — rows and requests those batches carried
    * `:mean_batch_size`, `:mean_batch_requests` — rows and requests per batch
    * `:rejected` — calls refused with `:overloaded`
    * `:timed_out` — calls that returned `{:error, :timeout}`
    * `:skipped` — queued requests dropped because their caller had gone
      away or had given up before a runner took them
    * `:runner_crashes` — runners that died; `:runners` — runners alive now
    * `:fallbacks` — merged batches that failed and were rerun one request
      at a time
    * `:queue_depth` — requests waiting now
  """
  @type t :: %{atom() => number()}

  @doc "A zeroed array of the runner counters."
  @spec new() :: :atomics.atomics_ref()
  def new, do: :atomics.new(length(@fields), signed: true)

  @doc "Adds `n` to a runner counter."
  @spec add(:atomics.atomics_ref(), field(), integer()) :: :ok
  def add(ref, field, n \\ 1), do: :atomics.add(ref, index(field), n)

  @doc "Sets a runner counter."
  @spec put(:atomics.atomics_ref(), field(), integer()) :: :ok
  def put(ref, field, n), do: :atomics.put(ref, index(field), n)

  @doc """
  The runner counters in `ref` together with the native queue's counters
  (`native`), plus the two means.
  """
  @spec snapshot(:atomics.atomics_ref(), map()) :: t()
  def snapshot(ref, native) do
    runners = Map.new(@fields, fn field -> {field, :atomics.get(ref, @indices[field])} end)
    counts = Map.merge(native, runners)
    batches = Map.get(counts, :batches, 0)

    Map.merge(counts, %{
      mean_batch_size: mean(Map.get(counts, :rows, 0), batches),
      mean_batch_requests: mean(Map.get(counts, :batched_requests, 0), batches)
    })
  end

  defp mean(_total, 0), do: 0.0
  defp mean(total, count), do: total / count
end
