defmodule Thunderbolt.Serving.Stats do
  @moduledoc """
  The counters of one serving, in an `:atomics` array that callers, the
  queue and the runners update without messages, so `Thunderbolt.Serving.stats/1`
  never waits behind a busy queue.

  The queue depth is not here: it is a gauge that belongs to one queue
  process (see `Thunderbolt.Serving.Queue`), so that a restarted queue does
  not inherit the count of requests that died with the old one.

      iex> stats = Thunderbolt.Serving.Stats.new()
      iex> Thunderbolt.Serving.Stats.add(stats, :batches, 2)
      iex> Thunderbolt.Serving.Stats.add(stats, :rows, 7)
      iex> snapshot = Thunderbolt.Serving.Stats.snapshot(stats)
      iex> {snapshot.batches, snapshot.mean_batch_size}
      {2, 3.5}
  """

  @fields [
    :requests,
    :batches,
    :rows,
    :batched_requests,
    :rejected,
    :timed_out,
    :skipped,
    :runner_crashes,
    :runners,
    :fallbacks
  ]

  @indices @fields |> Enum.with_index(1) |> Map.new()

  for {field, index} <- @indices do
    defp index(unquote(field)), do: unquote(index)
  end

  @type field ::
          :requests
          | :batches
          | :rows
          | :batched_requests
          | :rejected
          | :timed_out
          | :skipped
          | :runner_crashes
          | :runners
          | :fallbacks

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
      away or had given up before a runner was free
    * `:runner_crashes` — runners that died; `:runners` — runners alive now
    * `:fallbacks` — merged batches that failed and were rerun one request
      at a time
  """
  @type t :: %{atom() => number()}

  @doc "A zeroed counter array."
  @spec new() :: :atomics.atomics_ref()
  def new, do: :atomics.new(length(@fields), signed: true)

  @doc "Adds `n` to a counter."
  @spec add(:atomics.atomics_ref(), field(), integer()) :: :ok
  def add(ref, field, n \\ 1), do: :atomics.add(ref, index(field), n)

  @doc "Adds `n` to a counter and returns the new value."
  @spec add_get(:atomics.atomics_ref(), field(), integer()) :: integer()
  def add_get(ref, field, n \\ 1), do: :atomics.add_get(ref, index(field), n)

  @doc "Sets a counter."
  @spec put(:atomics.atomics_ref(), field(), integer()) :: :ok
  def put(ref, field, n), do: :atomics.put(ref, index(field), n)

  @doc "Reads every counter, plus the two means."
  @spec snapshot(:atomics.atomics_ref()) :: t()
  def snapshot(ref) do
    counts = Map.new(@fields, fn field -> {field, :atomics.get(ref, @indices[field])} end)

    Map.merge(counts, %{
      mean_batch_size: mean(counts.rows, counts.batches),
      mean_batch_requests: mean(counts.batched_requests, counts.batches)
    })
  end

  defp mean(_total, 0), do: 0.0
  defp mean(total, count), do: total / count
end
