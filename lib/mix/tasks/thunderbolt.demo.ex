defmodule Mix.Tasks.Thunderbolt.Demo do
  @shortdoc "Builds a Cerebros-style text model, serves it two ways, prints timings"

  @moduledoc """
  The end-to-end demo, without Python:

    1. builds a Cerebros-style text model with `Thunderbolt.Builder`:
       `Embedding(1000, 64) → GlobalAveragePooling1D → Dense(128, relu) →
       Dense(128, relu) → Dense(1000)`, 217,832 parameters, with seeded
       random weights (Keras's default initialisers);
    2. writes it to the model directory (`priv/models/` unless
       `THUNDERBOLT_MODEL_DIR` or `config :thunderbolt, :model_dir` says
       otherwise);
    3. runs sample token ids through the `Thunderbolt.KerasONNX` path and the
       `Thunderbolt.OnnxInference` path;
    4. prints the top-k predictions of both and the measured times next to
       the original application's 7 ms per inference and 65 ms per
       `OnnxInference` call.

  ```sh
  mix thunderbolt.demo [--iterations N] [--top-k K] [--seed S] [--model-dir DIR]
  ```

  ## Options

    * `--iterations N` — warm calls timed on each path (default 2000)
    * `--top-k K` — predictions to print (default 5)
    * `--seed S` — the weights' random seed (default 42)
    * `--model-dir DIR` — where to write the model (default the model directory)
  """
  use Mix.Task

  alias Thunderbolt.{Builder, KerasONNX, ModelDir, OnnxInference, Tensor}
  alias Thunderbolt.KerasONNX.{Input, Output}

  @switches [iterations: :integer, top_k: :integer, seed: :integer, model_dir: :string]
  @model_file "cerebros_demo.onnx"
  @vocab 1000
  @embedding_dim 64
  @hidden 128
  @sequence 40
  # The original application's measurements.
  @original_keras_onnx_ms 7
  @original_onnx_inference_ms 65

  @impl true
  def run(args) do
    {opts, rest, invalid} = OptionParser.parse(args, strict: @switches)

    if rest != [] or invalid != [] do
      Mix.raise(
        "usage: mix thunderbolt.demo [--iterations N] [--top-k K] [--seed S] [--model-dir DIR]"
      )
    end

    Mix.Task.run("app.start")

    iterations = Keyword.get(opts, :iterations, 2000)
    top_k = Keyword.get(opts, :top_k, 5)
    seed = Keyword.get(opts, :seed, 42)

    dir =
      Keyword.get(opts, :model_dir) |> then(&if(&1, do: Path.expand(&1), else: ModelDir.dir()))

    unless iterations > 0 and top_k > 0,
      do: Mix.raise("--iterations and --top-k must be positive")

    shell = Mix.shell()
    shell.info("Thunderbolt demo: a Cerebros-style text model, built and served from Elixir\n")

    path = build_model(dir, seed, shell)
    tokens = sample_tokens()
    shell.info("   sample token ids (#{length(tokens)}): #{inspect(tokens, limit: 12)}\n")

    keras_top = keras_onnx_path(path, tokens, iterations, top_k, shell)
    inference_top = onnx_inference_path(dir, tokens, iterations, top_k, shell)

    agree? =
      Enum.map(keras_top, fn {index, _} -> index end) ==
        Enum.map(inference_top, fn %{"index" => index} -> index end)

    shell.info("Both paths give the same top #{top_k}: #{if agree?, do: "yes", else: "NO"}")
    unless agree?, do: Mix.raise("the two paths disagree")
    :ok
  end

  # 1 and 2: build and write the model.
  defp build_model(dir, seed, shell) do
    :rand.seed(:exsss, {seed, seed, seed})

    {build_us, onnx} = :timer.tc(fn -> Builder.build!(spec()) end)

    File.mkdir_p!(dir)
    path = Path.join(dir, @model_file)
    # Written beside and renamed over, so a running cache sees a new file.
    File.write!(path <> ".tmp", onnx)
    File.rename!(path <> ".tmp", path)

    shell.info("""
    1. Built with Thunderbolt.Builder in #{ms(build_us)}:
       Embedding(#{@vocab}, #{@embedding_dim}) -> GlobalAveragePooling1D -> Dense(#{@hidden}, relu) -> Dense(#{@hidden}, relu) -> Dense(#{@vocab})
       #{parameters()} parameters, seeded random weights (seed #{seed}), #{div(byte_size(onnx), 1024)} KiB of ONNX
    2. Wrote #{Path.relative_to_cwd(path)}
    """)

    path
  end

  defp spec do
    %{
      name: "cerebros_demo",
      inputs: [%{name: "input_ids", type: :s64, shape: {nil, @sequence}}],
      layers: [
        %{
          name: "embedding",
          class_name: "Embedding",
          config: %{input_dim: @vocab, output_dim: @embedding_dim},
          inbound: "input_ids",
          # Keras's Embedding default: uniform in [-0.05, 0.05].
          weights: [uniform({@vocab, @embedding_dim}, 0.05)]
        },
        %{name: "pooling", class_name: "GlobalAveragePooling1D", inbound: "embedding"},
        dense("dense_1", "pooling", @embedding_dim, @hidden, "relu"),
        dense("dense_2", "dense_1", @hidden, @hidden, "relu"),
        dense("logits", "dense_2", @hidden, @vocab, "linear")
      ],
      outputs: ["logits"]
    }
  end

  # Keras's Dense defaults: Glorot-uniform kernel, zero bias.
  defp dense(name, inbound, fan_in, units, activation) do
    %{
      name: name,
      class_name: "Dense",
      config: %{units: units, activation: activation},
      inbound: inbound,
      weights: [
        uniform({fan_in, units}, :math.sqrt(6 / (fan_in + units))),
        Tensor.from_binary(<<0::size(units * 32)>>, :f32, {units})
      ]
    }
  end

  defp uniform(shape, limit) do
    n = shape |> Tuple.to_list() |> Enum.product()

    data =
      for _ <- 1..n, into: <<>>, do: <<(:rand.uniform_real() * 2 - 1) * limit::float-32-native>>

    Tensor.from_binary(data, :f32, shape)
  end

  defp parameters do
    @vocab * @embedding_dim + (@embedding_dim + 1) * @hidden + (@hidden + 1) * @hidden +
      (@hidden + 1) * @vocab
  end

  # A fixed, made-up "sentence" of token ids.
  defp sample_tokens, do: for(i <- 1..@sequence, do: rem(i * 389 + 17, @vocab))

  # 3 and 4: the KerasONNX path.
  defp keras_onnx_path(path, tokens, iterations, top_k, shell) do
    {load_us, {:ok, session}} = :timer.tc(fn -> KerasONNX.load!(path) end)

    input = %Input{
      tensor: Tensor.new([tokens], type: :s64),
      shape: {1, @sequence},
      dtype: {:s, 64}
    }

    {first_us, {:ok, output}} = :timer.tc(fn -> KerasONNX.infer(session, input) end)

    {times, run_times} =
      for _ <- 1..iterations do
        {us, {:ok, out}} = :timer.tc(fn -> KerasONNX.infer(session, input) end)
        {us, out.inference_time_us}
      end
      |> Enum.unzip()

    top = Output.top_k(output, top_k)

    shell.info("""
    3. KerasONNX path: KerasONNX.load!/2 once, then KerasONNX.infer/3
       load!                #{ms(load_us)}
       first infer          #{ms(first_us)}
       infer, warm          p50 #{us(median(times))} (inference_time_us p50 #{us(median(run_times))}) over #{iterations} calls
       the original         #{@original_keras_onnx_ms} ms per inference  ->  #{speedup(@original_keras_onnx_ms, median(times))}
       top #{top_k}:#{Enum.map_join(top, "", fn {index, score} -> "  ##{index} #{score(score)}" end)}
    """)

    top
  end

  # 3 and 4: the OnnxInference path, through the session cache.
  defp onnx_inference_path(dir, tokens, iterations, top_k, shell) do
    opts = [model_dir: dir, top_k: top_k]
    Thunderbolt.ModelServer.evict(Path.join(dir, @model_file))

    {first_us, {:ok, result}} =
      :timer.tc(fn -> OnnxInference.infer(@model_file, %{data: tokens}, %{}, opts) end)

    times =
      for _ <- 1..iterations do
        {us, {:ok, _}} =
          :timer.tc(fn -> OnnxInference.infer(@model_file, %{data: tokens}, %{}, opts) end)

        us
      end

    [top] = result.predictions["logits"]["top_k"]

    shell.info("""
    4. OnnxInference path: OnnxInference.infer("#{@model_file}", %{data: tokens}, %{}), JSON-ready predictions
       first call           #{ms(first_us)} (loads the model into Thunderbolt.ModelServer)
       warm call            p50 #{us(median(times))} over #{iterations} calls (duration_ms of the first: #{Float.round(result.duration_ms, 3)})
       the original         #{@original_onnx_inference_ms} ms per call, loading the model every time  ->  #{speedup(@original_onnx_inference_ms, median(times))}
       top #{top_k}:#{Enum.map_join(top, "", fn %{"index" => index, "score" => score} -> "  ##{index} #{score(score)}" end)}
    """)

    top
  end

  defp median(values), do: values |> Enum.sort() |> Enum.at(div(length(values), 2))

  defp ms(us), do: "#{:erlang.float_to_binary(us / 1000, decimals: 2)} ms"
  defp us(us), do: "#{us} µs"

  defp speedup(original_ms, measured_us) when measured_us > 0,
    do: "#{round(original_ms * 1000 / measured_us)}x faster"

  defp speedup(_original_ms, _measured_us), do: "below the clock's resolution"

  defp score(score) when is_float(score), do: :erlang.float_to_binary(score, decimals: 4)
  defp score(score), do: inspect(score)
end
