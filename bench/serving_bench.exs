# The serving layer's benchmark: OnnxInference.infer with a warm cache
# against Thunderbolt.run on the same input, measured in the same run.
#
#     mix run bench/serving_bench.exs [iterations]
#
# Uses ../shared/models/cerebros_trained.onnx (or THUNDERBOLT_SHARED_MODELS),
# and sets THUNDERBOLT_MODEL_DIR to that folder for the issue's call,
# OnnxInference.infer("cerebros_trained.onnx", %{data: tokens}, %{}).
# Targets (issue 5): OnnxInference p50 at most 1.5x Thunderbolt.run's, and
# at most 100 us.

defmodule ServingBench do
  def time_ns(fun) do
    start = System.monotonic_time()
    fun.()
    System.convert_time_unit(System.monotonic_time() - start, :native, :nanosecond)
  end

  # Alternates blocks of each case so that drift on a shared machine hits
  # both alike.
  def measure(cases, iterations, block \\ 500) do
    samples = Map.new(cases, fn {name, _} -> {name, []} end)

    Enum.reduce(1..div(iterations, block), samples, fn _, acc ->
      Enum.reduce(cases, acc, fn {name, fun}, acc ->
        times = for _ <- 1..block, do: time_ns(fun)
        Map.update!(acc, name, &(times ++ &1))
      end)
    end)
  end

  def percentile(sorted, p),
    do: Enum.at(sorted, min(length(sorted) - 1, round(p * (length(sorted) - 1))))

  def report(name, times) do
    sorted = Enum.sort(times)
    p50 = percentile(sorted, 0.5) / 1000
    p99 = percentile(sorted, 0.99) / 1000
    mean = Enum.sum(sorted) / length(sorted) / 1000

    IO.puts(
      String.pad_trailing(name, 44) <>
        "p50 #{fmt(p50)} us   p99 #{fmt(p99)} us   mean #{fmt(mean)} us"
    )

    p50
  end

  def fmt(x), do: :erlang.float_to_binary(x * 1.0, decimals: 1) |> String.pad_leading(7)
end

iterations = String.to_integer(List.first(System.argv()) || "20000")

models =
  System.get_env("THUNDERBOLT_SHARED_MODELS") || Path.expand("../../shared/models", __DIR__)

model = Path.join(models, "cerebros_trained.onnx")

unless File.exists?(model) do
  IO.puts("#{model} is absent: this benchmark needs the reference models in ../shared/models")
  System.halt(1)
end

tokens = Enum.map(1..40, &rem(&1 * 37, 1000))
input = %{data: tokens}
json_input = %{"data" => tokens}
opts = [model_dir: models]

# The issue's call is OnnxInference.infer/3, which reads the model directory
# from the environment (or the config) on every call: set it the way an
# application would.
System.put_env("THUNDERBOLT_MODEL_DIR", models)

{:ok, path} = Thunderbolt.ModelDir.resolve("cerebros_trained.onnx", models)
{:ok, session} = Thunderbolt.ModelServer.fetch(path)
ids = Thunderbolt.Tensor.new([tokens], type: :s64)

# Warm up: the cache, the scheduler choice of :auto, the code paths.
for _ <- 1..2000 do
  {:ok, _} = Thunderbolt.OnnxInference.infer("cerebros_trained.onnx", input, %{})
  {:ok, _} = Thunderbolt.OnnxInference.infer("cerebros_trained.onnx", input, %{}, opts)
  {:ok, _} = Thunderbolt.run(session, ids)
end

{:ok, %{"logits" => direct}} = Thunderbolt.run(session, ids)
# What OnnxInference hands its NIF for %{data: tokens} (see its tensor/4).
ref = session.resource
nif_inputs = [{tokens, :s64, 2, nil}]
limit = 1_000_000
check = fn _path -> :ok end
{:ok, served} = Thunderbolt.OnnxInference.infer("cerebros_trained.onnx", input, %{})
true = served.predictions["logits"]["tensor"] == Thunderbolt.Tensor.to_list(direct)

IO.puts("""
cerebros_trained.onnx, batch 1, #{iterations} calls each, #{System.schedulers_online()} schedulers, \
ONNX Runtime #{Thunderbolt.runtime_info()["version"]}
""")

cases = [
  {"Thunderbolt.run (tensor built once)", fn -> {:ok, _} = Thunderbolt.run(session, ids) end},
  {"OnnxInference.infer (atom keys, warm cache)",
   fn -> {:ok, _} = Thunderbolt.OnnxInference.infer("cerebros_trained.onnx", input, %{}) end},
  {"OnnxInference.infer (JSON string keys)",
   fn -> {:ok, _} = Thunderbolt.OnnxInference.infer("cerebros_trained.onnx", json_input, %{}) end},
  {"OnnxInference.infer (:model_dir option)",
   fn -> {:ok, _} = Thunderbolt.OnnxInference.infer("cerebros_trained.onnx", input, %{}, opts) end},
  # Where the difference goes:
  {"  ModelDir.dir (THUNDERBOLT_MODEL_DIR read)", fn -> Thunderbolt.ModelDir.dir() end},
  {"  ModelDir.resolve (one lstat)",
   fn -> {:ok, _} = Thunderbolt.ModelDir.resolve("cerebros_trained.onnx", models) end},
  {"  ModelServer.fetch_named (remembered)",
   fn ->
     {:ok, _, _} = Thunderbolt.ModelServer.fetch_named("cerebros_trained.onnx", models, [], check)
   end},
  {"  the NIF: ids in, run, lists out",
   fn ->
     {:ok, _, true} = Thunderbolt.Native.session_infer(ref, nif_inputs, limit, nil, nil, false)
   end},
  {"  the 1000 logits as a list of floats", fn -> Thunderbolt.Tensor.to_flat_list(direct) end},
  # The steps no warm call can skip, back to back, with none of
  # OnnxInference's checks: a floor for any OnnxInference.infer.
  {"  cache + NIF, bare",
   fn ->
     {:ok, _, s} = Thunderbolt.ModelServer.fetch_named("cerebros_trained.onnx", models, [], check)

     {:ok, _, true} =
       Thunderbolt.Native.session_infer(s.resource, nif_inputs, limit, nil, nil, false)
   end}
]

results = ServingBench.measure(cases, iterations)
p50 = Map.new(cases, fn {name, _} -> {name, ServingBench.report(name, results[name])} end)

run_p50 = p50["Thunderbolt.run (tensor built once)"]
infer_p50 = p50["OnnxInference.infer (atom keys, warm cache)"]
bare_p50 = p50["  cache + NIF, bare"]

IO.puts("""

OnnxInference.infer p50 / Thunderbolt.run p50 = #{:erlang.float_to_binary(infer_p50 / run_p50, decimals: 2)}x \
(target <= 1.5x); OnnxInference.infer p50 = #{ServingBench.fmt(infer_p50)} us (target <= 100 us)
The bare steps alone / Thunderbolt.run p50 = #{:erlang.float_to_binary(bare_p50 / run_p50, decimals: 2)}x
The original application: 7 ms per KerasONNX inference, 65 ms per OnnxInference call.
""")
