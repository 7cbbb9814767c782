# The builder benchmark (issue 3), from Elixir: Thunderbolt.Builder.build/1 on the
# 217,832-parameter Cerebros architecture (Embedding(1000, 64) → GlobalAveragePooling1D →
# Dense(128, relu) → Dense(128, relu) → Dense(1000)), spec normalization and the NIF
# included. Seeded made-up weights: building does not depend on their values.
#
#   mix run bench/builder_bench.exs
#
# The Rust-only figures (and peak memory) come from
#   cargo run --release -p thunderbolt_builder --example build_benchmark
# and the Python onnx.helper route from
#   .venv/bin/python bench/builder_python_baseline.py
#
# No numbers are asserted: this prints what it measures.

defmodule BuilderBench do
  alias Thunderbolt.{Builder, Tensor}

  def main do
    :rand.seed(:exsss, {1, 2, 3})
    spec = spec()

    weight_bytes =
      spec.layers
      |> Enum.flat_map(&(&1[:weights] || []))
      |> Enum.map(&byte_size(&1.data))
      |> Enum.sum()

    IO.puts(
      "model: #{div(weight_bytes, 4)} parameters (#{weight_bytes} bytes of float32 weights)"
    )

    for _ <- 1..20, do: Builder.build!(spec)

    samples =
      for _ <- 1..300 do
        {us, _} = :timer.tc(fn -> Builder.build!(spec) end)
        us / 1000
      end
      |> Enum.sort()

    pick = fn p -> Enum.at(samples, round((length(samples) - 1) * p)) end

    IO.puts(
      "Thunderbolt.Builder.build/1: min #{fmt(hd(samples))} ms, median #{fmt(pick.(0.5))} ms, " <>
        "p95 #{fmt(pick.(0.95))} ms over #{length(samples)} runs"
    )

    {:ok, session} = Thunderbolt.load({:binary, Builder.build!(spec)})
    ids = Tensor.new([Enum.to_list(0..39)], type: :s64)
    {:ok, %{"logits" => logits}} = Thunderbolt.run(session, ids)
    IO.puts("built model runs: logits #{inspect(logits.shape)}")
  end

  defp fmt(ms), do: :erlang.float_to_binary(ms, decimals: 3)

  defp weights(shape) do
    n = shape |> Tuple.to_list() |> Enum.product()
    data = for _ <- 1..n, into: <<>>, do: <<:rand.uniform() - 0.5::float-32-native>>
    Tensor.from_binary(data, :f32, shape)
  end

  defp dense(name, inbound, fan_in, units, activation) do
    %{
      name: name,
      class_name: "Dense",
      config: %{units: units, activation: activation},
      inbound: inbound,
      weights: [weights({fan_in, units}), weights({units})]
    }
  end

  defp spec do
    %{
      name: "cerebros",
      inputs: [%{name: "input_ids", type: :s64, shape: {nil, 40}}],
      layers: [
        %{
          name: "embedding",
          class_name: "Embedding",
          config: %{input_dim: 1000, output_dim: 64},
          inbound: "input_ids",
          weights: [weights({1000, 64})]
        },
        %{name: "pooling", class_name: "GlobalAveragePooling1D", inbound: "embedding"},
        dense("dense1", "pooling", 64, 128, "relu"),
        dense("dense2", "dense1", 128, 128, "relu"),
        dense("logits", "dense2", 128, 1000, "linear")
      ],
      outputs: ["logits"]
    }
  end
end

BuilderBench.main()
