# Where OnnxInference.infer's time above the NIF goes: compiles copies of
# Thunderbolt.OnnxInference with one step taken out each and times them
# side by side with the real module, alternating in blocks of 500 calls.
# A diagnostic: the copies are wrong on purpose (no limit from the
# configuration, no serving choice, ...), never use them for anything else.
#
#     mix run bench/serving_variants.exs
#
# Uses ../shared/models/cerebros_trained.onnx (or THUNDERBOLT_SHARED_MODELS).

source = File.read!(Path.expand("../lib/thunderbolt/onnx_inference.ex", __DIR__))

variant = fn name, edits ->
  code =
    Enum.reduce(edits, source, fn {from, to}, code ->
      unless String.contains?(code, from), do: raise("#{name}: the module no longer has #{from}")
      String.replace(code, from, to)
    end)

  code
  |> String.replace("defmodule Thunderbolt.OnnxInference do", "defmodule #{name} do")
  |> Code.compile_string()
end

variants = [
  {"the module as it is", Thunderbolt.OnnxInference, []},
  {"without the two configuration reads", Variant.NoConfig,
   [
     {"Application.get_env(:thunderbolt, :max_input_elements, @default_max_input_elements)",
      "@default_max_input_elements"},
     {"Application.get_env(:thunderbolt, :onnx_inference_servings, %{})", "%{}"}
   ]},
  {"without the measured duration", Variant.NoDuration,
   [
     {"    start = System.monotonic_time()\n", "    start = 0.0\n"},
     {"duration_ms: elapsed_ms(start),", "duration_ms: start,"}
   ]},
  {"without the option checks", Variant.NoOptions,
   [{"with {:ok, opts} <- validate_options(opts),", "with opts = Map.new(opts),"}]},
  {"without the input checks (one s64 input)", Variant.NoInputChecks,
   [
     {"{:ok, args} <- tensors(session, input, limit),", "args = [{input.data, :s64, 2, nil}],"}
   ]},
  {"without the serving choice", Variant.NoServing,
   [{"      case serving(opts, model_path, path) do", "      case nil do"}]}
]

for {_, name, edits} <- variants, edits != [], do: variant.(name, edits)

models =
  System.get_env("THUNDERBOLT_SHARED_MODELS") || Path.expand("../../shared/models", __DIR__)

unless File.exists?(Path.join(models, "cerebros_trained.onnx")) do
  IO.puts("#{models}/cerebros_trained.onnx is absent: this benchmark needs ../shared/models")
  System.halt(1)
end

tokens = Enum.map(1..40, &rem(&1 * 37, 1000))
input = %{data: tokens}
opts = [model_dir: models]

cases =
  for {label, module, _} <- variants,
      do: {label, fn -> {:ok, _} = module.infer("cerebros_trained.onnx", input, %{}, opts) end}

for {_, fun} <- cases, _ <- 1..3000, do: fun.()

time = fn fun ->
  start = System.monotonic_time()
  fun.()
  System.monotonic_time() - start
end

samples =
  Enum.reduce(1..40, %{}, fn _, acc ->
    Enum.reduce(cases, acc, fn {label, fun}, acc ->
      times = for _ <- 1..500, do: time.(fun)
      Map.update(acc, label, times, &(times ++ &1))
    end)
  end)

p50 = fn label ->
  sorted = Enum.sort(samples[label])
  System.convert_time_unit(Enum.at(sorted, div(length(sorted), 2)), :native, :nanosecond) / 1000
end

full = p50.("the module as it is")

for {label, _} <- cases do
  us = p50.(label)

  IO.puts(
    String.pad_trailing(label, 44) <>
      "p50 #{:erlang.float_to_binary(us, decimals: 2)} us  " <>
      "(#{:erlang.float_to_binary(us - full, decimals: 2)})"
  )
end
