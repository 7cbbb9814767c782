# How long a partial batch waits while the serving's other runner is busy.
#
# A serving with two runners and a 200 µs batch_timeout runs a 1000-row
# request of cerebros_trained.onnx (a few milliseconds); while it runs, a
# one-row request with another batch key (only the "logits" output) arrives.
# Its batch is partial and a batch is running, so it waits for its timeout,
# and then a parked runner must be woken to run it. Prints the one-row
# call's latency over 60 rounds.
#
#   mix run bench/partial_batch_bench.exs
#
# No numbers are asserted: this prints what it measures.

alias Thunderbolt.{Serving, Tensor}

model = Path.expand("../../shared/models/cerebros_trained.onnx", __DIR__)

unless File.exists?(model),
  do: raise("#{model} is absent: the benchmark needs ../shared/models")

{:ok, _} = Serving.start_link(name: PartialBench, model: model, runners: 2, batch_timeout: 200)

big = Tensor.new(for(r <- 1..1000, do: for(c <- 1..40, do: rem(r * 7 + c, 1000))), type: :s64)
one = Tensor.new([for(c <- 1..40, do: rem(c * 3, 1000))], type: :s64)

# Warm up both batch shapes, so that each is measured to fit a scheduler.
for _ <- 1..3 do
  {:ok, _} = Serving.run(PartialBench, big)
  {:ok, _} = Serving.run(PartialBench, one, outputs: ["logits"])
end

latencies =
  for _ <- 1..60 do
    busy = Task.async(fn -> Serving.run(PartialBench, big) end)
    Process.sleep(1)
    started = System.monotonic_time(:microsecond)
    {:ok, _} = Serving.run(PartialBench, one, outputs: ["logits"])
    latency = System.monotonic_time(:microsecond) - started
    {:ok, _} = Task.await(busy)
    latency
  end
  |> Enum.sort()

started = System.monotonic_time(:microsecond)
{:ok, _} = Serving.run(PartialBench, big)
big_us = System.monotonic_time(:microsecond) - started

IO.puts("""
one-row call behind a running 1000-row batch (batch_timeout 200 µs, 60 rounds):
  p50 #{Enum.at(latencies, 30)} µs, min #{hd(latencies)} µs, max #{List.last(latencies)} µs
the 1000-row batch alone: #{big_us} µs
""")
