# The dynamic batching benchmark (issue: Thunderbolt.Serving). In one run:
#
#   1. direct  — 64 callers, each calling Thunderbolt.run with one row of
#                cerebros_trained.onnx in a loop, on one shared session
#                (default load options);
#   2. served  — the same 64 callers through a Thunderbolt.Serving
#                (defaults, then runners: 1, then batch_timeout: 2000 µs);
#   3. routed  — the same callers on a node with no serving of its own,
#                routed to servings on 1 and then 2 peer nodes on this
#                machine (a functional figure: every node shares the same
#                cores);
#
# plus one caller alone, direct and served, to show what batching costs a
# caller that has nobody to batch with.
#
# Besides throughput and latency it prints the VM's CPU time per call (user
# + system, from /proc/self/stat), which other load on the machine disturbs
# much less than wall-clock throughput. BEAM schedulers busy-wait before
# sleeping, which inflates it; run with
#   ELIXIR_ERL_OPTIONS="+sbwt none +sbwtdcpu none +sbwtdio none"
# to count only work. For routed calls it covers only the calling node.
#
#   mix run bench/batching_bench.exs
#   SECONDS=2 mix run bench/batching_bench.exs   # shorter phases
#
# No numbers are asserted: this prints what it measures.

defmodule BatchingBench do
  alias Thunderbolt.{Serving, Tensor}

  @model Path.expand("../../shared/models/cerebros_trained.onnx", __DIR__)
  @callers 64

  def main do
    unless File.exists?(@model),
      do: raise("#{@model} is absent: the benchmark needs ../shared/models")

    seconds = String.to_integer(System.get_env("SECONDS", "5"))

    IO.puts("""
    model: #{@model}
    #{@callers} callers, batch-1 requests, #{seconds} s per phase, \
    #{System.schedulers_online()} schedulers, load average #{load_average()}
    """)

    inputs = for i <- 1..@callers, do: ids(i)
    session = Thunderbolt.load!(@model)

    direct = phase(inputs, seconds, fn x -> Thunderbolt.run(session, x) end)
    report("direct Thunderbolt.run, one session", direct)

    {:ok, _} = Serving.start_link(name: Bench, model: @model)
    served = phase(inputs, seconds, fn x -> Serving.run(Bench, x) end)

    report(
      "served, defaults (runners: #{System.schedulers_online()}, batch_size: 32)",
      served,
      Bench
    )

    {:ok, _} = Serving.start_link(name: Bench1, model: @model, runners: 1)
    served1 = phase(inputs, seconds, fn x -> Serving.run(Bench1, x) end)
    report("served, runners: 1", served1, Bench1)

    {:ok, _} = Serving.start_link(name: Bench2, model: @model, batch_timeout: 2_000)
    served2 = phase(inputs, seconds, fn x -> Serving.run(Bench2, x) end)
    report("served, batch_timeout: 2000 µs", served2, Bench2)

    IO.puts("""

    served / direct throughput: #{ratio(served, direct)} (defaults), \
    #{ratio(served1, direct)} (runners: 1), #{ratio(served2, direct)} (batch_timeout: 2000)
    """)

    lone(session, inputs)
    routed(inputs, seconds)
  end

  defp ids(i), do: Tensor.new([for(c <- 1..40, do: rem(i * 37 + c * 11, 1000))], type: :s64)

  # Each caller loops until the deadline and keeps its latencies (µs).
  defp phase(inputs, seconds, call) do
    run_for(inputs, 0.5, call)
    run_for(inputs, seconds, call)
  end

  defp run_for(inputs, seconds, call) do
    cpu0 = cpu_us()
    stop = System.monotonic_time(:microsecond) + round(seconds * 1_000_000)

    latencies =
      inputs
      |> Enum.map(fn x -> Task.async(fn -> loop(call, x, stop, []) end) end)
      |> Task.await_many(:infinity)
      |> Enum.concat()

    errors = Enum.count(latencies, &(&1 == :error))
    latencies = latencies |> Enum.reject(&(&1 == :error)) |> Enum.sort()
    cpu = cpu_us() - cpu0
    %{count: length(latencies), errors: errors, seconds: seconds, sorted: latencies, cpu: cpu}
  end

  # This OS process's user + system CPU time, from /proc (Linux, 100 Hz).
  defp cpu_us do
    case File.read("/proc/self/stat") do
      {:ok, stat} ->
        [utime, stime] = stat |> String.split() |> Enum.slice(13, 2)
        (String.to_integer(utime) + String.to_integer(stime)) * 10_000

      _ ->
        0
    end
  end

  defp loop(call, x, stop, acc) do
    t0 = System.monotonic_time(:microsecond)

    if t0 >= stop do
      acc
    else
      result = call.(x)
      t1 = System.monotonic_time(:microsecond)
      loop(call, x, stop, [if(match?({:ok, _}, result), do: t1 - t0, else: :error) | acc])
    end
  end

  defp report(label, %{count: n, errors: errors, seconds: s, sorted: sorted} = r, serving \\ nil) do
    batch =
      case serving && Serving.stats(serving) do
        {:ok, stats} -> ", mean batch #{Float.round(stats.mean_batch_size, 1)} rows"
        _ -> ""
      end

    IO.puts(
      String.pad_trailing(label, 58) <>
        "#{round(n / s)} calls/s  p50 #{pct(sorted, 50)} µs  p99 #{pct(sorted, 99)} µs  " <>
        "#{Float.round(r.cpu / max(n, 1), 1)} CPU-µs/call" <>
        "#{batch}#{if errors > 0, do: ", #{errors} errors", else: ""}"
    )
  end

  defp pct([], _), do: "-"
  defp pct(sorted, p), do: Enum.at(sorted, min(length(sorted) - 1, div(length(sorted) * p, 100)))

  defp ratio(a, b), do: "#{Float.round(a.count / max(b.count, 1), 2)}×"

  defp lone(session, [x | _]) do
    {:ok, _} = Serving.start_link(name: Lone, model: @model, runners: 1)
    direct = run_for([x], 1, fn x -> Thunderbolt.run(session, x) end)
    served = run_for([x], 1, fn x -> Serving.run(Lone, x) end)
    IO.puts("one caller alone (batch_timeout 200 µs):")
    report("  direct", direct)
    report("  served", served, Lone)
  end

  defp routed(inputs, seconds) do
    unless Node.alive?() do
      System.cmd("epmd", ["-daemon"])
      {:ok, _} = Node.start(:"tb_bench_#{System.pid()}@127.0.0.1", :longnames)
    end

    nodes = for _ <- 1..2, do: start_peer()
    IO.puts("\nrouted from a node without a serving (#{length(nodes)} peers on this machine):")

    [a, b] = nodes
    start_remote(a)
    one = phase(inputs, seconds, fn x -> Serving.run(Routed, x) end)
    report("  1 serving node", one)

    start_remote(b)
    two = phase(inputs, seconds, fn x -> Serving.run(Routed, x) end)
    report("  2 serving nodes", two)
    IO.puts("  2 nodes / 1 node: #{ratio(two, one)}")
  end

  defp start_peer do
    args = [~c"-connect_all", ~c"false" | Enum.flat_map(:code.get_path(), &[~c"-pa", &1])]
    name = :"tb_bench_peer_#{System.pid()}_#{System.unique_integer([:positive])}"

    {:ok, _peer, node} =
      :peer.start(%{name: name, host: ~c"127.0.0.1", longnames: true, args: args})

    {:ok, _} = :erpc.call(node, Application, :ensure_all_started, [:thunderbolt])
    node
  end

  defp start_remote(node) do
    spec = {Serving, name: Routed, model: @model}
    {:ok, _} = :erpc.call(node, Supervisor, :start_child, [Thunderbolt.Supervisor, spec])
    wait(fn -> node in Thunderbolt.Serving.Directory.remote_nodes(Routed) end)
  end

  defp wait(fun), do: if(fun.(), do: :ok, else: Process.sleep(10) && wait(fun))

  defp load_average do
    case File.read("/proc/loadavg") do
      {:ok, text} -> text |> String.split() |> Enum.take(3) |> Enum.join(" ")
      _ -> "unknown"
    end
  end
end

BatchingBench.main()
