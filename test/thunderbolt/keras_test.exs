defmodule Thunderbolt.KerasTest do
  use ExUnit.Case, async: true
  import Thunderbolt.TestModels

  alias Thunderbolt.{Keras, Tensor}

  doctest Thunderbolt.Keras

  # test/fixtures/keras/manifest.tsv, written by scripts/gen_keras_fixtures.py with real
  # Keras 3, and test/fixtures/keras2/manifest.tsv, by scripts/gen_keras2_fixtures.py with
  # real tf.keras 2.15, and test/fixtures/keras_releases/manifest.tsv, by
  # scripts/gen_keras_release_fixtures.py with other Keras 3 releases: one row per model,
  # input, expected output (Keras's prediction) or option. Each fixture's rows carry their
  # folder.
  @manifests ["keras", "keras2", "keras_releases"]
  for folder <- @manifests, do: @external_resource(fixture(folder <> "/manifest.tsv"))

  @fixtures (for folder <- @manifests,
                 row <-
                   fixture(folder <> "/manifest.tsv")
                   |> File.read!()
                   |> String.split("\n", trim: true)
                   |> Enum.reject(&String.starts_with?(&1, "#")) do
               [folder | String.split(row, "\t")]
             end)
            |> Enum.group_by(&Enum.at(&1, 1))

  defp tensor([folder, _fixture, _role, name, dtype, shape, file]) do
    dims =
      if shape == "-", do: [], else: shape |> String.split(",") |> Enum.map(&String.to_integer/1)

    data = File.read!(fixture(folder <> "/" <> file))
    {name, Tensor.from_binary(data, String.to_existing_atom(dtype), dims)}
  end

  defp rows(rows, role), do: Enum.filter(rows, &(Enum.at(&1, 2) == role))

  defp convert_options(rows) do
    for [_, _, _, "input_dtype", _, _, value] <- rows(rows, "option"),
        do: {:input_dtype, String.to_existing_atom(value)}
  end

  # 1e-5, or a mixed-precision fixture's own (Keras computes it in float16, the import in
  # float32).
  defp tolerance(rows) do
    case for [_, _, _, "tolerance", _, _, value] <- rows(rows, "option"), do: value do
      [value] -> value |> Float.parse() |> elem(0)
      [] -> 1.0e-5
    end
  end

  describe "convert/2" do
    for {name, rows} <- @fixtures do
      @rows rows
      test "#{name} matches Keras's predictions through Thunderbolt.run" do
        [[folder, _, _, _, _, _, model]] = rows(@rows, "model")
        {:ok, onnx} = Keras.convert(fixture(folder <> "/" <> model), convert_options(@rows))
        {:ok, session} = Thunderbolt.load({:binary, onnx})

        inputs = @rows |> rows("input") |> Map.new(&tensor/1)
        {:ok, outputs} = Thunderbolt.run(session, inputs)

        for {output, expected} <- @rows |> rows("output") |> Enum.map(&tensor/1) do
          got = Map.fetch!(outputs, output)
          assert got.shape == expected.shape, "#{output}: shape #{inspect(got.shape)}"

          assert_close(Tensor.to_flat_list(got), Tensor.to_flat_list(expected),
            rtol: tolerance(@rows),
            atol: tolerance(@rows)
          )
        end
      end
    end

    test "reads a model from a binary" do
      bytes = File.read!(fixture("keras/legacy_h5.h5"))
      assert {:ok, onnx} = Keras.convert({:binary, bytes})
      assert {:ok, _} = Thunderbolt.load({:binary, onnx})
    end

    test "renames outputs and retypes inputs" do
      path = fixture("keras/multi_io.keras")

      {:ok, onnx} =
        Keras.convert(path, output_names: ["probs", "score"], input_dtypes: %{"tokens" => :s64})

      {:ok, session} = Thunderbolt.load({:binary, onnx})
      assert Enum.map(session.outputs, & &1.name) == ["probs", "score"]

      assert Enum.map(session.inputs, &{&1.name, &1.type}) == [
               {"tokens", {:s, 64}},
               {"features", {:f, 32}}
             ]
    end

    test "maps a custom layer onto a built-in converter" do
      # interleaved_rope's InterleavedRoPE is built in; mapping it elsewhere shows the option
      # is used: onto Dropout (an identity) the model still converts, with other outputs.
      path = fixture("keras/interleaved_rope.keras")
      {:ok, rope} = Keras.convert(path)

      {:ok, identity} =
        Keras.convert(path, custom_layers: %{"cerebrosllmutils>InterleavedRoPE" => "Dropout"})

      assert rope != identity
    end

    test "errors are tagged and say what is wrong" do
      assert {:error, %Thunderbolt.Error{kind: :load, message: message}} =
               Keras.convert("/no/such.keras")

      assert message =~ "no such model file"

      # A device or a directory is refused by name, before any read.
      for path <- ["/dev/zero", fixture("keras")] do
        assert {:error, %Thunderbolt.Error{kind: :load, message: message}} = Keras.convert(path)
        assert message == "#{path} is not a regular file"
      end

      assert {:error, %Thunderbolt.Error{kind: :build, message: message}} =
               Keras.convert(fixture("keras/manifest.tsv"))

      assert message =~ "not a Keras model"

      assert {:error, %Thunderbolt.Error{kind: :invalid_option}} =
               Keras.convert(fixture("keras/sequential.keras"), output_names: ["a", "b"])

      assert {:error, %Thunderbolt.Error{kind: :invalid_option, message: message}} =
               Keras.convert(fixture("keras/sequential.keras"), input_dtype: :f128)

      assert message =~ "unknown type :f128"

      assert {:error, %Thunderbolt.Error{kind: :invalid_option}} =
               Keras.convert(fixture("keras/sequential.keras"), unknown: 1)

      # Beyond a machine word, which the NIF's option decoding raised on.
      assert {:error, %Thunderbolt.Error{kind: :invalid_option}} =
               Keras.convert(fixture("keras/sequential.keras"), opset: 10 ** 30)

      # Not keyword lists, or improper ones: these raised in Keyword and Enum.
      for opts <- [:opset, [{:opset, 18} | :more], [output_names: [:a | :b]]] do
        assert {:error, %Thunderbolt.Error{kind: :invalid_option}} =
                 Keras.convert(fixture("keras/sequential.keras"), opts),
               inspect(opts)
      end
    end

    @tag :shared_models
    test "cerebros_trained.keras gives the outputs of cerebros_trained.onnx" do
      {:ok, onnx} = Keras.convert(shared("cerebros_trained.keras"), input_dtype: :s64)
      {:ok, ours} = Thunderbolt.load({:binary, onnx})
      {:ok, reference} = Thunderbolt.load(shared("cerebros_trained.onnx"))
      ids = Tensor.new([Enum.map(0..39, &rem(&1 * 37 + 5, 1000))], type: :s64)
      {:ok, %{"logits" => a}} = Thunderbolt.run(ours, %{"input_ids" => ids})
      {:ok, %{"logits" => b}} = Thunderbolt.run(reference, %{"input_ids" => ids})
      assert a.data == b.data
    end
  end

  describe "convert!/2" do
    test "raises Thunderbolt.Error" do
      assert_raise Thunderbolt.Error, ~r/not a Keras model/, fn ->
        Keras.convert!({:binary, "nope"})
      end
    end
  end

  describe "convert_file/3" do
    @tag :tmp_dir
    test "writes a loadable model", %{tmp_dir: dir} do
      out = Path.join(dir, "seq.onnx")
      assert :ok = Keras.convert_file(fixture("keras/sequential.keras"), out)
      assert {:ok, _} = Thunderbolt.load(out)
    end

    @tag :tmp_dir
    test "writes nothing on error", %{tmp_dir: dir} do
      out = Path.join(dir, "bad.onnx")
      assert {:error, _} = Keras.convert_file({:binary, "nope"}, out)
      refute File.exists?(out)
    end
  end

  describe "parameter_count/1" do
    test "refuses bytes that are not ONNX" do
      assert {:error, %Thunderbolt.Error{kind: :build}} = Keras.parameter_count("nope")
    end
  end
end
