# The runtime benchmark (issue: runtime core). One command, side by side:
#
#   1. floor — the `ort` crate's Session::run in a Rust loop (no BEAM);
#   2. peer  — Python onnxruntime 1.31.1 InferenceSession.run;
#   3. ours  — Thunderbolt.run from Elixir;
#
# all on ../shared/models/cerebros_trained.onnx with the same settings
# (one intra-op and one inter-op thread, ORT_ENABLE_ALL), then concurrency,
# responsiveness and memory figures for our path.
#
#   mix run bench/runtime_bench.exs            # full run (several minutes)
#   QUICK=1 mix run bench/runtime_bench.exs    # fewer iterations
#
# No numbers are asserted: this prints what it measures.

defmodule RuntimeBench do
  alias Thunderbolt.Tensor

  @model Path.expand("../../shared/models/cerebros_trained.onnx", __DIR__)

  # A child VM started by main/0 for one round of ours: it prints that
  # round's figures as JSON and exits.
  def main(iterations: n) do
    session = Thunderbolt.load!(@model)
    IO.puts(:jiffy.encode(ours(session, n)))
  end

  def main do
    unless File.exists?(@model),
      do: raise("#{@model} is absent: the benchmark needs ../shared/models")

    quick? = System.get_env("QUICK") == "1"
    iterations = if quick?, do: 5_000, else: 20_000

    IO.puts(
      "model: #{@model}\niterations at batch 1: #{iterations} (batch 32: #{div(iterations, 4)})\n"
    )

    # Three interleaved rounds, then the median of each figure: the machine's
    # noise moves one path's numbers for seconds at a time, and interleaving
    # spreads it over all three. Each round of each path is a fresh OS
    # process: where the model's weights land in memory moves a process's
    # batch-1 p50 by up to 0.5 us for its whole life (seen on the floor and
    # on ours alike), so no path gets one lucky or unlucky placement for
    # all three rounds.
    {_, 0} = System.cmd("cargo", ~w(build --release -q -p thunderbolt_runtime --example floor))

    rounds =
      for _ <- 1..3,
          do: {floor_bench(iterations), peer(iterations), ours_in_new_vm(iterations)}

    table(median_of(rounds, 0), median_of(rounds, 1), median_of(rounds, 2))
    spread(rounds)
    schedulers(iterations)
    concurrency(if quick?, do: 1_000, else: 3_000)
    memory(if(quick?, do: 20_000, else: 200_000), if(quick?, do: 1_000, else: 10_000))
  end

  defp floor_bench(n) do
    target = System.get_env("CARGO_TARGET_DIR", "target")

    {out, 0} =
      System.cmd(Path.expand(Path.join(target, "release/examples/floor")), [@model, "#{n}"])

    :jiffy.decode(out, [:return_maps])
  end

  defp peer(n) do
    python = Path.expand(".venv/bin/python")
    {out, 0} = System.cmd(python, ["bench/peer_onnxruntime.py", @model, "#{n}"])
    :jiffy.decode(out, [:return_maps])
  end

  defp ours_in_new_vm(n) do
    {out, 0} =
      System.cmd("mix", ["run", "--no-compile", "bench/runtime_bench.exs"],
        env: [{"THUNDERBOLT_BENCH_OURS", "#{n}"}]
      )

    out |> String.split("\n", trim: true) |> List.last() |> :jiffy.decode([:return_maps])
  end

  defp ours(session, n) do
    for batch <- [1, 32], into: %{} do
      ids = ids(batch)
      runs = if batch == 1, do: n, else: div(n, 4)
      {p50, p99} = latency(fn -> {:ok, _} = Thunderbolt.run(session, ids) end, runs)
      {"b#{batch}", %{"p50" => p50, "p99" => p99}}
    end
  end

  defp median_of(rounds, which) do
    for batch <- ["b1", "b32"], into: %{} do
      stats =
        for stat <- ["p50", "p99"], into: %{} do
          values = rounds |> Enum.map(&elem(&1, which)[batch][stat]) |> Enum.sort()
          {stat, Enum.at(values, div(length(values), 2))}
        end

      {batch, stats}
    end
  end

  defp table(floor, peer, ours) do
    IO.puts("latency, microseconds, median of 3 interleaved rounds        p50      p99")

    for batch <- ["b1", "b32"] do
      for {label, m} <- [
            {"floor (ort crate, Rust)", floor},
            {"peer (Python onnxruntime)", peer},
            {"ours (Thunderbolt.run)", ours}
          ] do
        IO.puts(
          "  #{batch} #{String.pad_trailing(label, 26)} #{fmt(m[batch]["p50"])} #{fmt(m[batch]["p99"])}"
        )
      end

      IO.puts(
        "  #{batch} ours/floor p50 = #{ratio(ours[batch]["p50"], floor[batch]["p50"])}, " <>
          "ours/peer p50 = #{ratio(ours[batch]["p50"], peer[batch]["p50"])}\n"
      )
    end
  end

  defp spread(rounds) do
    each = fn which ->
      Enum.map_join(rounds, " ", &String.trim(fmt(elem(&1, which)["b1"]["p50"])))
    end

    IO.puts("""
    b1 p50 of each round (one OS process each):
      floor #{each.(0)}; peer #{each.(1)}; ours #{each.(2)}
      ours/floor by round: #{Enum.map_join(rounds, " ", &ratio(elem(&1, 2)["b1"]["p50"], elem(&1, 0)["b1"]["p50"]))}
    """)
  end

  defp schedulers(n) do
    session = Thunderbolt.load!(@model)
    ids = ids(1)

    IO.puts("scheduler choice at batch 1, p50/p99 us")

    for mode <- [:normal, :dirty, :auto] do
      {p50, p99} = latency(fn -> {:ok, _} = Thunderbolt.run(session, ids, scheduler: mode) end, n)
      IO.puts("  #{String.pad_trailing(inspect(mode), 8)} #{fmt(p50)} #{fmt(p99)}")
    end

    IO.puts("")
  end

  defp concurrency(ms) do
    session = Thunderbolt.load!(@model)
    ids = ids(1)
    {_, idle} = with_sleeper(fn -> Process.sleep(ms) end)
    one = throughput(session, ids, 1, ms)
    {sixteen, lateness} = with_sleeper(fn -> throughput(session, ids, 16, ms) end)

    IO.puts("""
    concurrency (pool_size #{session.options[:pool_size]}, #{System.schedulers_online()} schedulers, #{ms} ms each)
      1 process:    #{round(one)} runs/s
      16 processes: #{round(sixteen)} runs/s  (#{ratio(sixteen, one)}x one process)
      lateness of a process looping on :timer.sleep(1), beyond the 1 ms asked for:
        idle VM:                 p50 #{fmt(idle.p50)} us, p99 #{fmt(idle.p99)} us, max #{fmt(idle.max)} us
        during the 16-process run: p50 #{fmt(lateness.p50)} us, p99 #{fmt(lateness.p99)} us, max #{fmt(lateness.max)} us
    """)
  end

  defp throughput(session, ids, procs, ms) do
    deadline = System.monotonic_time(:millisecond) + ms

    1..procs
    |> Enum.map(fn _ -> Task.async(fn -> loop(session, ids, deadline, 0) end) end)
    |> Task.await_many(ms + 30_000)
    |> Enum.sum()
    |> Kernel./(ms / 1000)
  end

  defp loop(session, ids, deadline, count) do
    if System.monotonic_time(:millisecond) >= deadline do
      count
    else
      {:ok, _} = Thunderbolt.run(session, ids)
      loop(session, ids, deadline, count + 1)
    end
  end

  defp with_sleeper(fun) do
    parent = self()
    sleeper = spawn_link(fn -> sleep_loop(parent, []) end)
    result = fun.()
    send(sleeper, :stop)
    lateness = receive do: ({:lateness, l} -> l)
    sorted = Enum.sort(lateness)
    pct = fn p -> Enum.at(sorted, trunc((length(sorted) - 1) * p)) end
    {result, %{p50: pct.(0.5), p99: pct.(0.99), max: List.last(sorted)}}
  end

  defp sleep_loop(parent, acc) do
    receive do
      :stop -> send(parent, {:lateness, acc})
    after
      0 ->
        t0 = System.monotonic_time(:microsecond)
        :timer.sleep(1)
        sleep_loop(parent, [System.monotonic_time(:microsecond) - t0 - 1000 | acc])
    end
  end

  defp memory(runs, cycles) do
    session = Thunderbolt.load!(@model)
    ids = ids(1)
    for _ <- 1..1_000, do: Thunderbolt.run(session, ids)
    :erlang.garbage_collect()
    before = rss_kb()
    for _ <- 1..runs, do: {:ok, _} = Thunderbolt.run(session, ids)
    :erlang.garbage_collect()
    after_runs = rss_kb()

    bytes = File.read!(@model)
    for _ <- 1..50, do: Thunderbolt.load!({:binary, bytes}, pool_size: 1)
    :erlang.garbage_collect()
    before_cycles = rss_kb()

    for i <- 1..cycles do
      _ = Thunderbolt.load!({:binary, bytes}, pool_size: 1)
      if rem(i, 100) == 0, do: :erlang.garbage_collect()
    end

    :erlang.garbage_collect()
    after_cycles = rss_kb()

    IO.puts("""
    memory (RSS of this OS process)
      #{runs} runs:                #{fmt_mb(after_runs - before)} MB growth
      #{cycles} load-and-drop cycles: #{fmt_mb(after_cycles - before_cycles)} MB growth
    """)
  end

  defp rss_kb do
    "/proc/self/status"
    |> File.read!()
    |> String.split("\n")
    |> Enum.find_value(fn line ->
      case String.split(line) do
        ["VmRSS:", kb, "kB"] -> String.to_integer(kb)
        _ -> nil
      end
    end)
  end

  defp ids(batch) do
    0..(batch * 40 - 1)
    |> Enum.map(&rem(&1, 1000))
    |> Tensor.new(type: :s64)
    |> Tensor.reshape({batch, 40})
  end

  defp latency(fun, n) do
    for _ <- 1..div(n, 10), do: fun.()

    sorted =
      Enum.map(1..n, fn _ ->
        t0 = System.monotonic_time(:nanosecond)
        fun.()
        System.monotonic_time(:nanosecond) - t0
      end)
      |> Enum.sort()

    {Enum.at(sorted, div(n, 2)) / 1000, Enum.at(sorted, trunc((n - 1) * 0.99)) / 1000}
  end

  defp fmt(x), do: :erlang.float_to_binary(x / 1, decimals: 2) |> String.pad_leading(8)
  defp fmt_mb(kb), do: :erlang.float_to_binary(kb / 1024, decimals: 1)
  defp ratio(a, b), do: :erlang.float_to_binary(a / b, decimals: 2)
end

case System.get_env("THUNDERBOLT_BENCH_OURS") do
  nil -> RuntimeBench.main()
  n -> RuntimeBench.main(iterations: String.to_integer(n))
end
