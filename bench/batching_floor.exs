# What a served call must cost at least on this machine, to judge the
# batching issue's target of 3x the direct throughput. In one run, with 64
# callers sending batch-1 requests (CPU time of the whole VM per call, from
# /proc/self/stat, which both schedulers' busy-waiting would inflate: run
# with ELIXIR_ERL_OPTIONS="+sbwt none +sbwtdcpu none +sbwtdio none"):
#
#   1. direct     — Thunderbolt.run on one cerebros_trained.onnx session;
#   2. ORT / row  — one process running 32-row batches of the same model:
#                   ONNX Runtime's own cost of a row inside a batch;
#   3. served     — the same callers through a Thunderbolt.Serving
#                   (defaults); minus (2), the serving path's own cost;
#   4. bare VM    — no NIF and no model: each caller sends a message to one
#                   of two batcher processes and blocks for its answer (a
#                   sub-binary of a shared binary, as a serving's answers
#                   are); a batcher answers its 32 callers once all have
#                   asked, so batches are full, as the served ones are (one
#                   that waits 1 ms for more goes partly filled, as at the
#                   end of a phase).
#
# With both cores busy throughput is the inverse of CPU per call, so 3x the
# direct throughput needs a served call under a third of a direct one. Any
# design where a caller blocks for its own rows pays at least (2) + (4).
#
#   mix run bench/batching_floor.exs
#   SECONDS=2 mix run bench/batching_floor.exs   # shorter phases
#
# No numbers are asserted: this prints what it measures.

defmodule BatchingFloor do
  alias Thunderbolt.{Serving, Tensor}

  @model Path.expand("../../shared/models/cerebros_trained.onnx", __DIR__)
  @callers 64
  @batch 32

  def main do
    unless File.exists?(@model),
      do: raise("#{@model} is absent: the benchmark needs ../shared/models")

    seconds = String.to_integer(System.get_env("SECONDS", "3"))

    IO.puts(
      "#{@callers} callers, batch-1 requests, #{seconds} s per phase, " <>
        "#{System.schedulers_online()} schedulers\n"
    )

    session = Thunderbolt.load!(@model)
    rows = for i <- 1..@callers, do: token_row(i)

    direct = callers(rows, seconds, &Thunderbolt.run(session, &1))
    report("1. direct Thunderbolt.run, one session", direct, "call")

    per_row = batch_rows(session, rows, seconds)
    report("2. ONNX Runtime, 32-row batches, one process", per_row, "row")

    {:ok, _} = Serving.start_link(name: FloorServing, model: @model)
    served = callers(rows, seconds, &Serving.run(FloorServing, &1))
    {:ok, stats} = Serving.stats(FloorServing)

    report(
      "3. served, defaults (mean batch #{Float.round(stats.mean_batch_size, 1)})",
      served,
      "call"
    )

    bare = bare_vm(seconds)
    report("4. bare VM: send, batch, answer, wake", bare, "call")

    floor = per_row.cpu_per + bare.cpu_per

    IO.puts("""

    3x the direct throughput needs a served call under #{fmt(direct.cpu_per / 3)} CPU-µs; \
    served: #{fmt(served.cpu_per)} (#{fmt(served.per_s / direct.per_s)}x direct).
    Floor of any design where callers block, (2) + (4): #{fmt(floor)} CPU-µs \
    (#{fmt(direct.cpu_per / floor)}x direct at best).
    The serving path beyond ONNX Runtime, (3) - (2): #{fmt(served.cpu_per - per_row.cpu_per)} \
    CPU-µs a call, against #{fmt(bare.cpu_per)} for the bare VM.
    """)
  end

  defp token_row(i), do: Tensor.new([for(c <- 1..40, do: rem(i * 37 + c * 11, 1000))], type: :s64)

  # Each input gets a process that calls `call` in a loop until the deadline.
  defp callers(inputs, seconds, call) do
    measure(seconds, fn stop ->
      inputs
      |> Enum.map(fn x -> Task.async(fn -> loop(fn -> {:ok, _} = call.(x) end, stop, 0) end) end)
      |> Task.await_many(:infinity)
      |> Enum.sum()
    end)
  end

  defp batch_rows(session, rows, seconds) do
    batch =
      rows |> Enum.take(@batch) |> Enum.map(&hd(Tensor.to_list(&1))) |> Tensor.new(type: :s64)

    {:ok, _} = Thunderbolt.run(session, batch)

    measure(seconds, fn stop ->
      @batch * loop(fn -> {:ok, _} = Thunderbolt.run(session, batch) end, stop, 0)
    end)
  end

  defp bare_vm(seconds) do
    answer = :binary.copy(<<0>>, 4000 * @batch)
    batchers = for _ <- 1..2, do: spawn_link(fn -> batcher(answer) end)

    measure(seconds, fn stop ->
      1..@callers
      |> Enum.map(fn i ->
        batcher = Enum.at(batchers, rem(i, 2))
        Task.async(fn -> loop(fn -> ask(batcher) end, stop, 0) end)
      end)
      |> Task.await_many(:infinity)
      |> Enum.sum()
    end)
  end

  defp ask(batcher) do
    ref = make_ref()
    send(batcher, {self(), ref})

    receive do
      {^ref, _rows} -> :ok
    after
      5_000 -> raise "no answer"
    end
  end

  defp batcher(answer) do
    take(@batch)
    |> Enum.with_index()
    |> Enum.each(fn {{pid, ref}, i} -> send(pid, {ref, binary_part(answer, i * 4000, 4000)}) end)

    batcher(answer)
  end

  defp take(0), do: []

  defp take(n) do
    receive do
      request -> [request | take(n - 1)]
    after
      if(n == @batch, do: :infinity, else: 1) -> []
    end
  end

  defp loop(fun, stop, n) do
    if System.monotonic_time(:microsecond) >= stop do
      n
    else
      fun.()
      loop(fun, stop, n + 1)
    end
  end

  # Runs `work` (which returns how many units it did) for `seconds`, after
  # half a second of warm-up, and returns units per second and CPU per unit.
  defp measure(seconds, work) do
    work.(System.monotonic_time(:microsecond) + 500_000)
    cpu0 = cpu_us()
    t0 = System.monotonic_time(:microsecond)
    n = work.(t0 + seconds * 1_000_000)
    wall = System.monotonic_time(:microsecond) - t0
    %{per_s: n / wall * 1_000_000, cpu_per: (cpu_us() - cpu0) / max(n, 1)}
  end

  # This OS process's user + system CPU time, from /proc (Linux, 100 Hz).
  defp cpu_us do
    [utime, stime] = File.read!("/proc/self/stat") |> String.split() |> Enum.slice(13, 2)

    (String.to_integer(utime) + String.to_integer(stime)) * 10_000
  end

  defp report(label, %{per_s: per_s, cpu_per: cpu_per}, unit) do
    IO.puts(
      String.pad_trailing(label, 50) <>
        "#{round(per_s)} #{unit}s/s  #{fmt(cpu_per)} CPU-µs/#{unit}"
    )
  end

  defp fmt(x), do: :erlang.float_to_binary(x * 1.0, decimals: 2)
end

BatchingFloor.main()
