defmodule Thunderbolt.BuilderTest do
  use ExUnit.Case, async: true
  doctest Thunderbolt.Builder

  import Thunderbolt.TestModels, only: [assert_close: 3, fixture: 1]

  alias Thunderbolt.{Builder, Error, Tensor}

  # Written by scripts/gen_builder_fixtures.py: a spec, feeds and the outputs of
  # NumPy reference implementations of the Keras layers, in Erlang term format.
  @fixtures "builder/*.etf" |> fixture() |> Path.wildcard() |> Enum.sort()

  @types %{"float32" => :f32, "float64" => :f64, "int32" => :s32, "int64" => :s64, "uint8" => :u8}

  defp tensor(%{"dtype" => dtype, "shape" => shape, "data" => data}) do
    Tensor.from_binary(data, Map.fetch!(@types, dtype), List.to_tuple(shape))
  end

  defp spec(%{"name" => name, "opset" => opset} = spec) do
    %{
      name: name,
      opset: opset,
      inputs:
        for i <- spec["inputs"] do
          %{
            name: i["name"],
            type: Map.fetch!(@types, i["dtype"]),
            shape: List.to_tuple(i["shape"])
          }
        end,
      layers:
        for l <- spec["layers"] do
          %{
            name: l["name"],
            class_name: l["class_name"],
            config: l["config"],
            inbound: l["inbound"],
            weights: Enum.map(l["weights"], &tensor/1)
          }
        end,
      outputs: for(o <- spec["outputs"], do: %{name: o["name"], source: o["source"]})
    }
  end

  defp dense_spec(kernel_shape \\ {4, 2}) do
    %{
      inputs: [%{name: "x", type: :f32, shape: {nil, 4}}],
      layers: [
        %{
          name: "dense",
          class_name: "Dense",
          config: %{"units" => 2, "activation" => "relu"},
          inbound: ["x"],
          weights: [ones(kernel_shape), ones({2})]
        }
      ],
      outputs: [%{name: "y", source: "dense"}]
    }
  end

  defp ones(shape) do
    n = shape |> Tuple.to_list() |> Enum.product()
    Tensor.from_binary(:binary.copy(<<1.0::float-32-native>>, n), :f32, shape)
  end

  describe "build/1" do
    test "the fixtures cover every layer" do
      classes =
        for path <- @fixtures,
            layer <- :erlang.binary_to_term(File.read!(path))["spec"]["layers"],
            into: MapSet.new(),
            do: layer["class_name"]

      for class <-
            ~w(Embedding Dense Activation Softmax GlobalAveragePooling1D GlobalMaxPooling1D
               Flatten Reshape Concatenate Add Subtract Multiply Average Maximum Minimum
               Dropout GaussianNoise GaussianDropout BatchNormalization LayerNormalization
               AddConstant Conv2D Conv3D DepthwiseConv1D DepthwiseConv2D SeparableConv1D
               SeparableConv2D MaxPooling2D AveragePooling2D MaxPooling3D AveragePooling3D
               GlobalAveragePooling2D GlobalMaxPooling2D GlobalAveragePooling3D
               GlobalMaxPooling3D ZeroPadding1D ZeroPadding2D ZeroPadding3D Cropping1D
               Cropping2D Cropping3D UpSampling1D UpSampling2D UpSampling3D RandomFlip
               RandomRotation RandomZoom RandomTranslation RandomContrast RandomBrightness
               Conv1DTranspose Conv2DTranspose Conv3DTranspose Resizing CenterCrop Dot
               UnitNormalization GroupNormalization Discretization CategoryEncoding
               KerasOperation EinsumDense RMSNormalization Attention AdditiveAttention) do
        assert class in classes, "no fixture uses #{class}"
      end
    end

    for path <- @fixtures do
      name = Path.basename(path, ".etf")

      test "fixture #{name} matches the NumPy reference in ONNX Runtime" do
        doc = :erlang.binary_to_term(File.read!(unquote(path)))
        assert {:ok, onnx} = Builder.build(spec(doc["spec"]))
        assert {:ok, session} = Thunderbolt.load({:binary, onnx})
        feeds = Map.new(doc["feeds"], fn {name, t} -> {name, tensor(t)} end)
        assert {:ok, outputs} = Thunderbolt.run(session, feeds)

        for {output, expected} <- doc["expected"] do
          expected = tensor(expected)
          got = Map.fetch!(outputs, output)
          assert {got.type, got.shape} == {expected.type, expected.shape}, "output #{output}"

          assert_close(Tensor.to_flat_list(got), Tensor.to_flat_list(expected),
            rtol: doc["rtol"],
            atol: doc["atol"]
          )
        end
      end
    end

    test "is deterministic, and atom keys and values in configs mean the same as strings" do
      strings = dense_spec()

      atoms =
        put_in(strings, [:layers, Access.at(0), :config], units: 2, activation: :relu)
        |> put_in([:layers, Access.at(0), :inbound], "x")
        |> put_in([:outputs], [%{name: "y", source: :dense}])

      assert {:ok, a} = Builder.build(strings)
      assert {:ok, ^a} = Builder.build(strings)
      assert {:ok, ^a} = Builder.build(atoms)
    end

    test "nested config values cross the NIF: activation objects, lists and tuples" do
      spec = %{
        inputs: [%{name: "x", type: :f32, shape: {nil, 2, 3}}],
        layers: [
          %{name: "r", class_name: "Reshape", config: %{target_shape: {3, 2}}, inbound: "x"},
          %{name: "s", class_name: "Softmax", config: %{axis: [1, 2]}, inbound: "r"},
          %{
            name: "g",
            class_name: "Activation",
            config: %{activation: %{name: "gelu", approximate: true}},
            inbound: "s"
          }
        ],
        outputs: ["g"]
      }

      assert {:ok, onnx} = Builder.build(spec)
      {:ok, session} = Thunderbolt.load({:binary, onnx})
      x = Tensor.new([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]], type: :f32)
      assert {:ok, %{"g" => %Tensor{shape: {1, 3, 2}} = g}} = Thunderbolt.run(session, x)

      # softmax over all six values, then gelu (tanh form), computed here.
      exps = Enum.map(1..6, &:math.exp/1)
      p = Enum.map(exps, &(&1 / Enum.sum(exps)))

      gelu = fn v ->
        0.5 * v * (1 + :math.tanh(:math.sqrt(2 / :math.pi()) * (v + 0.044715 * v * v * v)))
      end

      assert_close(Tensor.to_flat_list(g), Enum.map(p, gelu), rtol: 1.0e-5)
    end
  end

  describe "build/1 errors" do
    defp build_error(spec) do
      assert {:error, %Error{} = error} = Builder.build(spec)
      error
    end

    test "unknown layer type" do
      spec = put_in(dense_spec(), [:layers, Access.at(0), :class_name], "Conv9D")
      assert %Error{kind: :build, message: message} = build_error(spec)
      assert message =~ ~s(layer "dense": unknown layer type "Conv9D")
    end

    test "missing weights" do
      spec = put_in(dense_spec(), [:layers, Access.at(0), :weights], [])
      assert %Error{kind: :build, message: message} = build_error(spec)

      assert message =~
               ~s|layer "dense" (Dense): expects 2 weight tensor(s) [kernel, bias], got 0|
    end

    test "a kernel that does not match the incoming tensor" do
      assert %Error{kind: :build, message: message} = build_error(dense_spec({5, 2}))

      assert message =~
               ~s|layer "dense" (Dense): weight "kernel" has shape [5, 2], expected (4, 2)|
    end

    test "weight bytes that do not match the shape" do
      short = %Tensor{type: {:f, 32}, shape: {4, 2}, data: <<0::size(31)-unit(8)>>}
      spec = put_in(dense_spec(), [:layers, Access.at(0), :weights, Access.at(0)], short)
      assert %Error{kind: :build, message: message} = build_error(spec)
      assert message =~ "needs 32 bytes, got 31"
    end

    test "dangling references" do
      spec = put_in(dense_spec(), [:layers, Access.at(0), :inbound], ["nope"])
      assert %Error{kind: :build, message: message} = build_error(spec)
      assert message == ~s(layer "dense" refers to "nope", which is neither an input nor a layer)

      spec = put_in(dense_spec(), [:outputs], [%{name: "y", source: "missing"}])

      assert %Error{kind: :build, message: ~s(output "y" refers to "missing") <> _} =
               build_error(spec)
    end

    test "cycles" do
      spec =
        update_in(dense_spec(), [:layers], fn [dense] ->
          [
            %{dense | inbound: ["relu"]},
            %{
              name: "relu",
              class_name: "Activation",
              config: %{activation: "relu"},
              inbound: ["dense"]
            }
          ]
        end)

      assert %Error{kind: :build, message: message} = build_error(spec)
      assert message =~ "layers form a cycle"
      assert message =~ "dense" and message =~ "relu"
    end

    test "duplicate names" do
      spec = update_in(dense_spec(), [:layers], fn [dense] -> [dense, dense] end)
      assert %Error{kind: :build, message: ~s(duplicate name "dense") <> _} = build_error(spec)
    end

    test "unsupported dtypes" do
      spec = put_in(dense_spec(), [:inputs, Access.at(0), :type], :s32)
      assert %Error{kind: :build, message: message} = build_error(spec)
      assert message =~ ~s|layer "dense" (Dense) input: unsupported dtype int32|

      spec = put_in(dense_spec(), [:inputs, Access.at(0), :type], :bf16)
      assert %Error{kind: :build, message: message} = build_error(spec)
      assert message =~ "unsupported dtype bf16"
    end

    test "unsupported opset" do
      assert %Error{kind: :build, message: message} =
               build_error(Map.put(dense_spec(), :opset, 11))

      assert message == "unsupported opset 11 (supported: 18 to 22)"
    end

    test "malformed specs are invalid input" do
      assert %Error{kind: :invalid_input, message: message} = build_error(%{layers: []})
      assert message =~ ":inputs"
      assert %Error{kind: :invalid_input} = build_error("not a spec")

      spec = put_in(dense_spec(), [:layers, Access.at(0), :weights], [[1.0, 2.0]])
      assert %Error{kind: :invalid_input, message: message} = build_error(spec)
      assert message =~ ~s(layer "dense": weight 0 is not a tensor)

      spec = put_in(dense_spec(), [:layers, Access.at(0), :inbounds], ["x"])
      assert %Error{kind: :invalid_input, message: message} = build_error(spec)
      assert message =~ "unknown keys [:inbounds]"

      spec = put_in(dense_spec(), [:layers, Access.at(0), :config], %{units: self()})
      assert %Error{kind: :invalid_input, message: message} = build_error(spec)
      assert message =~ "cannot put"
    end
  end

  describe "build!/1" do
    test "returns the model or raises" do
      assert is_binary(Builder.build!(dense_spec()))

      assert_raise Error, ~r/unknown layer type/, fn ->
        dense_spec() |> put_in([:layers, Access.at(0), :class_name], "Nope") |> Builder.build!()
      end
    end
  end

  describe "build/1 with malformed specs" do
    test "improper lists, out-of-range numbers and hand-built tensors are errors, not raises" do
      weight = ones({4, 2})
      huge = Bitwise.bsl(1, 70)

      specs = [
        put_in(dense_spec(), [:layers, Access.at(0), :config, "units"], [2 | 3]),
        put_in(dense_spec(), [:layers, Access.at(0), :inbound], ["x" | "y"]),
        put_in(dense_spec(), [:layers, Access.at(0), :weights], [weight | ones({2})]),
        %{dense_spec() | layers: [hd(dense_spec().layers) | :more]},
        %{dense_spec() | inputs: [%{name: "x", type: :f32, shape: [nil | 4]}]},
        %{dense_spec() | inputs: [%{name: "x", type: :f32, shape: {nil, huge}}]},
        Map.put(dense_spec(), :opset, huge),
        put_in(dense_spec(), [:layers, Access.at(0), :weights], [%{weight | type: :bogus}, weight]),
        put_in(dense_spec(), [:layers, Access.at(0), :weights], [
          %{weight | shape: [4, 2]},
          weight
        ]),
        put_in(dense_spec(), [:layers, Access.at(0), :weights], [
          %{weight | shape: {huge}},
          weight
        ]),
        put_in(dense_spec(), [:layers, Access.at(0), :weights], [%{weight | data: nil}, weight])
      ]

      for spec <- specs do
        assert {:error, %Error{message: message}} = Builder.build(spec)
        refute message =~ "malformed model spec", "a raw NIF error for #{inspect(spec)}"
      end
    end

    test "input shapes that ONNX Runtime could never load are refused while building" do
      for shape <- [{nil, Bitwise.bsl(1, 40), Bitwise.bsl(1, 31), Bitwise.bsl(1, 31)}, {0, 4}] do
        spec = %{dense_spec() | inputs: [%{name: "x", type: :f32, shape: shape}]}
        assert {:error, %Error{kind: :build, message: message}} = Builder.build(spec)
        assert message =~ ~r/more than 2\^63 elements|a dimension of 0/
      end
    end

    # Seeded mutations of the fixture specs: whatever a caller passes, the
    # answer is a model or an error, never a raise or a dead VM.
    # THUNDERBOLT_MUTATIONS=200000 runs a longer search (about 15 s).
    test "random mutations of real specs build or fail cleanly" do
      specs = for path <- @fixtures, do: spec(:erlang.binary_to_term(File.read!(path))["spec"])

      for seed <- 1..String.to_integer(System.get_env("THUNDERBOLT_MUTATIONS", "600")) do
        :rand.seed(:exsss, {seed, 11, 17})
        spec = Enum.reduce(1..:rand.uniform(3), Enum.random(specs), fn _, s -> mutate(s) end)

        case Builder.build(spec) do
          {:ok, onnx} -> assert is_binary(onnx)
          {:error, %Error{}} -> :ok
        end
      end
    end
  end

  # One random change somewhere in a spec.
  defp mutate(spec) do
    case :rand.uniform(7) do
      1 ->
        update_layer(spec, &%{&1 | config: Map.put(&1.config, random_key(), random_value())})

      2 ->
        update_layer(spec, &%{&1 | inbound: Enum.random([["nope"], [&1.name], [], ["x" | "y"]])})

      3 ->
        update_layer(spec, &%{&1 | weights: Enum.map(&1.weights, fn w -> odd_tensor(w) end)})

      4 ->
        classes =
          ~w(Dense Reshape Nope LSTM GRU Bidirectional Conv1D MaxPooling1D Normalization) ++
            ~w(ReLU PReLU Rescaling Permute RepeatVector MultiHeadAttention TimeDistributed Masking)

        update_layer(spec, &%{&1 | class_name: Enum.random(classes)})

      5 ->
        %{spec | inputs: Enum.map(spec.inputs, &%{&1 | shape: odd_shape(&1.shape)})}

      6 ->
        %{spec | inputs: Enum.map(spec.inputs, &%{&1 | type: Enum.random([:u8, :bool, :x])})}

      7 ->
        Map.put(spec, :opset, Enum.random([0, 17, 22, 99, -1, Bitwise.bsl(1, 70)]))
    end
  end

  defp update_layer(%{layers: []} = spec, _fun), do: spec

  defp update_layer(spec, fun),
    do: %{spec | layers: List.update_at(spec.layers, :rand.uniform(length(spec.layers)) - 1, fun)}

  defp random_key,
    do:
      Enum.random(
        ~w(units axis epsilon target_shape activation input_dim output_dim rate) ++
          ~w(filters kernel_size strides dilation_rate groups padding pool_size n dims scale) ++
          ~w(offset mean variance invert max_value threshold negative_slope alpha layer) ++
          ~w(merge_mode return_sequences go_backwards reset_after use_bias data_format) ++
          ~w(num_heads key_dim value_dim use_causal_mask attention_axes output_shape) ++
          ~w(mask_zero keras_mask keras_operation keras_2 mask_value)
      )

  defp random_value,
    do:
      Enum.random([
        -3,
        0,
        1,
        7,
        Bitwise.bsl(1, 40),
        Bitwise.bsl(1, 70),
        1.0e30,
        nil,
        "nope",
        "relu",
        [1, -1],
        [2 | 3],
        {4, 2},
        %{"name" => "gelu"},
        true,
        "same",
        "causal",
        "channels_first",
        [[1], [2, 3]],
        ["x", "ids"],
        %{"class_name" => "LSTM", "config" => %{"units" => 2}}
      ])

  defp odd_shape(shape) do
    dims = Tuple.to_list(shape)

    Enum.random([
      List.to_tuple(Enum.map(dims, fn _ -> Enum.random([nil, 0, 7, Bitwise.bsl(1, 40)]) end)),
      List.to_tuple(dims ++ [3]),
      {},
      List.to_tuple(Enum.map(dims, &(&1 || 1_000_000_000)))
    ])
  end

  defp odd_tensor(_tensor) do
    Enum.random([
      Tensor.from_binary(<<>>, :f32, {0}),
      Tensor.new([[1, 2]], type: :s64),
      %{ones({4, 2}) | shape: {8, 2}},
      %{ones({4, 2}) | type: :bogus},
      %{ones({4, 2}) | data: nil}
    ])
  end

  describe "build_file/2" do
    @tag :tmp_dir
    test "writes a model that loads, and writes nothing on error", %{tmp_dir: dir} do
      path = Path.join(dir, "dense.onnx")
      assert :ok = Builder.build_file(dense_spec(), path)
      assert {:ok, session} = Thunderbolt.load(path)

      assert {:ok, %{"y" => y}} =
               Thunderbolt.run(session, Tensor.new([[1.0, 2.0, 3.0, 4.0]], type: :f32))

      assert Tensor.to_flat_list(y) == [11.0, 11.0]

      bad = Path.join(dir, "bad.onnx")
      assert {:error, %Error{kind: :build}} = Builder.build_file(dense_spec({3, 2}), bad)
      refute File.exists?(bad)

      assert {:error, %Error{kind: :load, message: message}} =
               Builder.build_file(dense_spec(), Path.join([dir, "missing", "x.onnx"]))

      assert message =~ "cannot write"
      assert {:error, %Error{kind: :load}} = Builder.build_file(dense_spec(), dir)
    end

    @tag :tmp_dir
    test "replaces the file whole, even a FIFO that a plain write would block on",
         %{tmp_dir: dir} do
      path = Path.join(dir, "model.onnx")
      File.write!(path, "an older model")
      assert :ok = Builder.build_file(dense_spec(), path)
      assert File.read!(path) == Builder.build!(dense_spec())

      fifo = Path.join(dir, "fifo.onnx")
      {_, 0} = System.cmd("mkfifo", [fifo])
      task = Task.async(fn -> Builder.build_file(dense_spec(), fifo) end)
      assert Task.yield(task, 5_000) == {:ok, :ok}
      assert File.regular?(fifo)

      # No temporary file is left behind.
      assert Enum.sort(File.ls!(dir)) == ["fifo.onnx", "model.onnx"]
    end
  end
end
