# The BEAM path with CUDA, on a machine with an NVIDIA GPU: every serving
# layer asked for `execution_providers: [:cuda, :cpu]`, checked against
# CPU sessions of the same library and timed beside them. A check for a
# GPU machine, not part of the test suite (CI has no GPU).
#
#     THUNDERBOLT_ORT_LIB=.../libonnxruntime.so.1.31.1 mix run bench/cuda_check.exs [MODEL]
#
# The library must be the `onnxruntime-gpu` wheel's, with
# `libonnxruntime_providers_shared.so` and `libonnxruntime_providers_cuda.so`
# beside it. MODEL defaults to ../shared/models/cerebros_trained.onnx.
# Prints one line per check and halts with status 1 when a check fails.

defmodule CudaCheck do
  alias Thunderbolt.{KerasONNX, OnnxInference, Serving, Tensor}

  @cuda [execution_providers: [:cuda, :cpu]]

  def main(model) do
    unless File.exists?(model), do: fail("no model at #{model}")
    cpu = Thunderbolt.load!(model)
    IO.puts("ONNX Runtime #{Thunderbolt.runtime_info()["version"]} from #{lib()}")
    cuda = Thunderbolt.load!(model, @cuda)
    IO.puts("providers #{inspect(cuda.providers)}, warnings #{inspect(cuda.warnings)}")
    unless hd(cuda.providers) == "CUDAExecutionProvider", do: fail("CUDA did not start")

    for batch <- [1, 32] do
      ids = ids(batch)
      max_diff = max_diff(logits(cpu, ids), logits(cuda, ids))
      report("Thunderbolt.run, batch #{batch}: largest difference from CPU", max_diff)
    end

    # KerasONNX, as the original application calls it.
    {:ok, keras} = KerasONNX.load!(model, @cuda)
    {:ok, input} = KerasONNX.Input.new(ids(1), {1, 40}, :s64, %{})
    {:ok, output} = KerasONNX.infer(keras, input)
    report("KerasONNX.infer", max_diff(Tensor.to_flat_list(output.tensor), logits(cpu, ids(1))))

    # OnnxInference with CUDA load options; its cache keys on them.
    dir = Path.dirname(model)
    name = Path.basename(model)
    tokens = hd(Tensor.to_list(ids(1)))
    opts = [model_dir: dir, load_options: @cuda]
    {:ok, result} = OnnxInference.infer(name, %{"data" => tokens}, %{}, opts)
    got = List.flatten(result.predictions["logits"]["tensor"])
    report("OnnxInference.infer", max_diff(got, logits(cpu, ids(1))))

    # A serving whose runners each load a CUDA session: 64 concurrent
    # callers, each answer checked against the CPU.
    {:ok, _} = Serving.start_link(name: CudaServing, model: model, load_options: @cuda)

    diffs =
      1..64
      |> Task.async_stream(
        fn i ->
          row = ids(1, i)
          {:ok, %{"logits" => out}} = Serving.run(CudaServing, row)
          max_diff(Tensor.to_flat_list(out), logits(cpu, row))
        end,
        max_concurrency: 64
      )
      |> Enum.map(fn {:ok, diff} -> diff end)

    {:ok, stats} = Serving.stats(CudaServing)
    report("Serving, 64 callers (#{stats.batches} batches)", Enum.max(diffs))

    # Each timed twice, alternately; the lower p50 of each is kept.
    for batch <- [1, 32] do
      ids = ids(batch)
      cpu_run = fn -> {:ok, _} = Thunderbolt.run(cpu, ids) end
      cuda_run = fn -> {:ok, _} = Thunderbolt.run(cuda, ids) end
      [c1, g1, c2, g2] = Enum.map([cpu_run, cuda_run, cpu_run, cuda_run], &p50_us/1)

      IO.puts(
        "Thunderbolt.run p50 at batch #{batch}: CPU #{min(c1, c2)} us, CUDA #{min(g1, g2)} us"
      )
    end
  end

  defp lib, do: System.get_env("THUNDERBOLT_ORT_LIB", "the default library")

  defp ids(batch, seed \\ 0),
    do:
      Tensor.new(for(r <- 1..batch, do: for(c <- 1..40, do: rem((r + seed) * 37 + c * 11, 1000))),
        type: :s64
      )

  defp logits(session, ids) do
    {:ok, %{"logits" => out}} = Thunderbolt.run(session, ids)
    Tensor.to_flat_list(out)
  end

  defp max_diff(a, b) when length(a) == length(b),
    do: a |> Enum.zip(b) |> Enum.map(fn {x, y} -> abs(x - y) end) |> Enum.max()

  defp max_diff(a, b), do: fail("#{length(a)} values against #{length(b)}")

  # float32 logits from two providers differ in summation order only.
  defp report(what, diff) when diff <= 1.0e-3, do: IO.puts("#{what}: #{diff} (ok)")
  defp report(what, diff), do: fail("#{what}: #{diff}, above 1.0e-3")

  defp p50_us(fun) do
    for _ <- 1..200, do: fun.()

    times =
      for _ <- 1..2000 do
        start = System.monotonic_time()
        fun.()
        System.monotonic_time() - start
      end

    median = times |> Enum.sort() |> Enum.at(1000)
    Float.round(System.convert_time_unit(median, :native, :nanosecond) / 1000, 1)
  end

  defp fail(message) do
    IO.puts("FAILED: #{message}")
    System.halt(1)
  end
end

model =
  List.first(System.argv()) ||
    Path.expand("../../shared/models/cerebros_trained.onnx", __DIR__)

CudaCheck.main(model)
