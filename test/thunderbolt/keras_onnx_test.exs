defmodule Thunderbolt.KerasONNXTest do
  use ExUnit.Case, async: true
  doctest Thunderbolt.KerasONNX
  doctest Thunderbolt.KerasONNX.Input
  doctest Thunderbolt.KerasONNX.Output

  import Thunderbolt.TestModels, only: [assert_close: 2, assert_close: 3]

  alias Thunderbolt.{KerasONNX, Session, Tensor, TestModels}
  alias Thunderbolt.KerasONNX.{Input, Output}

  @tiny TestModels.fixture("serving/tiny_text.onnx")
  @positional TestModels.fixture("serving/positional.onnx")

  setup_all do
    %{expected: TestModels.json!("serving/expected.json")}
  end

  defp rows(tensor), do: Tensor.to_list(tensor)

  describe "the original's usage" do
    @describetag :shared_models

    test "load!, Input, infer, as the application wrote them" do
      tokens = Enum.map(1..40, &rem(&1 * 7, 1000))

      {:ok, session} = KerasONNX.load!(TestModels.shared("cerebros_trained.onnx"))

      input = %Input{
        tensor: Tensor.new([tokens], type: :s64),
        shape: {1, 40},
        dtype: {:s, 64},
        metadata: %{}
      }

      {:ok, output} = KerasONNX.infer(session, input)

      assert %Output{shape: {1, 1000}, dtype: {:f, 32}} = output
      assert is_integer(output.inference_time_us) and output.inference_time_us > 0

      {:ok, %{"logits" => direct}} = Thunderbolt.run(session, Tensor.new([tokens], type: :s64))
      assert output.tensor == direct
      assert [{_index, _score} | _] = top = Output.top_k(output, 5)
      assert length(top) == 5
      assert :ok = KerasONNX.close(session)
    end

    test "a model with two inputs, cerebros_mini.onnx" do
      {:ok, session} = KerasONNX.load!(TestModels.shared("cerebros_mini.onnx"))
      tokens = Tensor.new([Enum.to_list(1..40), Enum.to_list(41..80)], type: :s32)
      positions = Tensor.new(List.duplicate(List.duplicate(0.5, 64), 40), type: :f32)
      tensors = %{"input_ids" => tokens, "functional_1/Add/y:0" => positions}

      {:ok, output} = KerasONNX.infer(session, Input.new!(tensors))
      {:ok, %{"logits" => direct}} = Thunderbolt.run(session, tensors)

      assert output.shape == {2, 1000}
      assert output.tensor == direct
    end

    test "infer_batch on cerebros_trained equals one infer per input" do
      {:ok, session} = KerasONNX.load!(TestModels.shared("cerebros_trained.onnx"))

      inputs =
        for n <- [1, 3, 2] do
          ids = for row <- 1..n, do: Enum.map(1..40, &rem(&1 * row * 13, 1000))
          Input.new!(Tensor.new(ids, type: :s64))
        end

      {:ok, batched} = KerasONNX.infer_batch(session, inputs)

      for {input, output} <- Enum.zip(inputs, batched) do
        {:ok, single} = KerasONNX.infer(session, input)
        assert output.shape == single.shape
        assert_close(Tensor.to_flat_list(output.tensor), Tensor.to_flat_list(single.tensor))
      end
    end
  end

  describe "load!/2" do
    test "an absolute path" do
      assert {:ok, %Session{inputs: [%{name: "input_ids"}]}} = KerasONNX.load!(@tiny)
    end

    test "a path relative to the current directory" do
      assert {:ok, %Session{}} = KerasONNX.load!(Path.relative_to_cwd(@tiny))
    end

    test "then under the app's priv/, then under the model directory" do
      unique = "keras_onnx_test_#{System.unique_integer([:positive])}"
      priv = :code.priv_dir(:thunderbolt) |> List.to_string()
      # priv/models is the default model directory and is ignored by git.
      in_priv = Path.join([priv, "models", unique, "m.onnx"])
      in_model_dir = Path.join([Thunderbolt.ModelDir.dir(), "models", unique, "m.onnx"])
      only_in_model_dir = Path.join([Thunderbolt.ModelDir.dir(), unique, "other.onnx"])

      for {path, source} <- [
            {in_priv, @tiny},
            {in_model_dir, @positional},
            {only_in_model_dir, @positional}
          ] do
        File.mkdir_p!(Path.dirname(path))
        File.cp!(source, path)
      end

      on_exit(fn ->
        File.rm_rf!(Path.join([priv, "models", unique]))
        File.rm_rf!(Path.join([Thunderbolt.ModelDir.dir(), "models", unique]))
        File.rm_rf!(Path.join(Thunderbolt.ModelDir.dir(), unique))
        # Only if no other test is using it.
        File.rmdir(Path.join(Thunderbolt.ModelDir.dir(), "models"))
      end)

      # Both exist: priv/ comes first.
      assert {:ok, %Session{inputs: [_]}} = KerasONNX.load!("models/#{unique}/m.onnx")
      # A leading priv/ is allowed.
      assert {:ok, %Session{inputs: [_]}} = KerasONNX.load!("priv/models/#{unique}/m.onnx")
      # Only under the model directory.
      assert {:ok, %Session{inputs: [_, _]}} = KerasONNX.load!("#{unique}/other.onnx")
    end

    test "the options are honoured" do
      {:ok, session} =
        KerasONNX.load!(@tiny,
          execution_providers: ["CUDAExecutionProvider", :cpu],
          optimization_level: 1,
          intra_op_num_threads: 2,
          inter_op_num_threads: 3
        )

      assert session.options[:execution_providers] == [:cuda, :cpu]
      assert session.options[:optimization_level] == :basic
      assert session.options[:intra_op_threads] == 2
      assert session.options[:inter_op_threads] == 3
      # CPU is always the last resort; CUDA is used only where this build has it.
      assert List.last(session.providers) == "CPUExecutionProvider"

      {:ok, session} = KerasONNX.load!(@tiny, optimization_level: :disable)
      assert session.options[:optimization_level] == :disable
    end

    test "errors in the original's vocabulary" do
      assert KerasONNX.load!("missing.onnx") == {:error, {:file_not_found, "missing.onnx"}}

      json = TestModels.fixture("serving/expected.json")
      assert KerasONNX.load!(json) == {:error, {:invalid_extension, json}}

      broken =
        Path.join(
          System.tmp_dir!(),
          "keras_onnx_broken_#{System.unique_integer([:positive])}.onnx"
        )

      File.write!(broken, "not a model")
      on_exit(fn -> File.rm(broken) end)
      assert {:error, {:load_failed, %Thunderbolt.Error{kind: :load}}} = KerasONNX.load!(broken)

      assert {:error, {:invalid_option, _}} = KerasONNX.load!(@tiny, threads: 2)
      assert {:error, {:invalid_option, _}} = KerasONNX.load!(@tiny, execution_providers: ["GPU"])
      assert {:error, {:invalid_option, _}} = KerasONNX.load!(@tiny, execution_providers: :cpu)
      assert {:error, {:invalid_option, _}} = KerasONNX.load!(@tiny, optimization_level: 7)
      assert {:error, {:invalid_option, _}} = KerasONNX.load!(@tiny, intra_op_num_threads: -1)
      assert {:error, {:invalid_option, _}} = KerasONNX.load!(@tiny, [:cpu])
      assert {:error, {:invalid_input, _}} = KerasONNX.load!(nil)
    end
  end

  describe "infer/3" do
    setup do
      {:ok, session} = KerasONNX.load!(@tiny)
      %{session: session}
    end

    test "matches onnxruntime and reaches every output", %{session: session, expected: expected} do
      ids = Tensor.new(expected["input_ids"], type: :s64)
      {:ok, output} = KerasONNX.infer(session, Input.new!(ids, {3, 8}, :s64, %{request: 7}))

      assert output.metadata.output_name == "logits"
      assert output.metadata.request == 7
      assert Map.keys(output.metadata.outputs) == ["logits", "probabilities"]

      assert_close(
        rows(output.tensor) |> List.flatten(),
        List.flatten(expected["tiny_text"]["logits"])
      )

      assert_close(
        rows(output.metadata.outputs["probabilities"]) |> List.flatten(),
        List.flatten(expected["tiny_text"]["probabilities"])
      )
    end

    test ":output picks the tensor, :outputs limits what is computed", %{session: session} do
      input = Input.new!(Tensor.new([Enum.to_list(1..8)], type: :s64))

      {:ok, output} = KerasONNX.infer(session, input, output: "probabilities")
      assert output.metadata.output_name == "probabilities"
      assert_close([Enum.sum(Tensor.to_flat_list(output.tensor))], [1.0], atol: 1.0e-5)

      {:ok, output} = KerasONNX.infer(session, input, outputs: ["probabilities"])
      assert Map.keys(output.metadata.outputs) == ["probabilities"]

      assert {:error, {:invalid_option, _}} = KerasONNX.infer(session, input, output: "nope")

      assert {:error, {:invalid_option, _}} =
               KerasONNX.infer(session, input, outputs: ["logits"], output: "probabilities")

      assert {:error, {:invalid_option, _}} = KerasONNX.infer(session, input, batch: 2)
    end

    test "a model with two inputs takes a map, with atom or string names", %{expected: expected} do
      {:ok, session} = KerasONNX.load!(@positional)
      ids = Tensor.new(expected["input_ids"], type: :s32)
      positions = Tensor.new(expected["positions"], type: :f32)

      for tensors <- [
            %{input_ids: ids, positions: positions},
            %{"input_ids" => ids, "positions" => positions}
          ] do
        {:ok, output} = KerasONNX.infer(session, %Input{tensor: tensors})
        assert output.shape == {3, 6}

        assert_close(
          List.flatten(rows(output.tensor)),
          List.flatten(expected["positional"]["logits"])
        )
      end

      assert {:error, {:invalid_input, message}} = KerasONNX.infer(session, Input.new!(ids))
      assert message =~ "positions"
    end

    test "bad input is an error, never a crash", %{session: session} do
      ids = Tensor.new([Enum.to_list(1..8)], type: :s64)

      # A literal Input whose shape or dtype contradicts its tensor.
      assert {:error, {:invalid_input, _}} =
               KerasONNX.infer(session, %Input{tensor: ids, shape: {8, 1}})

      assert {:error, {:invalid_input, _}} =
               KerasONNX.infer(session, %Input{tensor: ids, dtype: :f32})

      assert {:error, {:invalid_input, _}} = KerasONNX.infer(session, %Input{tensor: [1, 2, 3]})
      assert {:error, {:invalid_input, _}} = KerasONNX.infer(session, %{tensor: ids})
      assert {:error, {:invalid_input, _}} = KerasONNX.infer(:not_a_session, Input.new!(ids))

      # The model's own checks: wrong type, wrong width.
      assert {:error, {:invalid_input, _}} =
               KerasONNX.infer(session, Input.new!(Tensor.new([Enum.to_list(1..8)], type: :s32)))

      assert {:error, {:invalid_input, _}} =
               KerasONNX.infer(session, Input.new!(Tensor.new([Enum.to_list(1..5)], type: :s64)))

      # An out-of-range token id fails inside ONNX Runtime.
      assert {:error, {:inference_failed, %Thunderbolt.Error{kind: :onnxruntime}}} =
               KerasONNX.infer(
                 session,
                 Input.new!(Tensor.new([List.duplicate(999, 8)], type: :s64))
               )
    end
  end

  describe "infer_batch/3" do
    test "stacks the inputs into one run and equals one infer per input", %{expected: expected} do
      {:ok, session} = KerasONNX.load!(@tiny)
      [r1, r2, r3] = expected["input_ids"]

      inputs = [
        Input.new!(Tensor.new([r1], type: :s64), nil, nil, %{id: 1}),
        Input.new!(Tensor.new([r2, r3], type: :s64), nil, nil, %{id: 2}),
        Input.new!(Tensor.new([r3], type: :s64), nil, nil, %{id: 3})
      ]

      {:ok, outputs} = KerasONNX.infer_batch(session, inputs)

      assert Enum.map(outputs, & &1.metadata.id) == [1, 2, 3]
      assert Enum.map(outputs, & &1.shape) == [{1, 6}, {2, 6}, {1, 6}]
      assert Enum.all?(outputs, &(&1.metadata.batch_size == 3))

      for {input, output} <- Enum.zip(inputs, outputs) do
        {:ok, single} = KerasONNX.infer(session, input)

        for name <- ["logits", "probabilities"] do
          assert_close(
            Tensor.to_flat_list(output.metadata.outputs[name]),
            Tensor.to_flat_list(single.metadata.outputs[name])
          )
        end
      end
    end

    test "passes an input without a batch axis once", %{expected: expected} do
      {:ok, session} = KerasONNX.load!(@positional)
      positions = Tensor.new(expected["positions"], type: :f32)
      [r1, r2, r3] = expected["input_ids"]

      inputs =
        for ids <- [[r1], [r2, r3]] do
          Input.new!(%{"input_ids" => Tensor.new(ids, type: :s32), "positions" => positions})
        end

      {:ok, [first, second]} = KerasONNX.infer_batch(session, inputs)
      logits = expected["positional"]["logits"]
      assert_close(Tensor.to_flat_list(first.tensor), List.flatten(Enum.take(logits, 1)))
      assert_close(Tensor.to_flat_list(second.tensor), List.flatten(Enum.drop(logits, 1)))

      other = Tensor.new(List.duplicate(List.duplicate(0.0, 4), 8), type: :f32)

      mixed = [
        hd(inputs),
        Input.new!(%{"input_ids" => Tensor.new([r1], type: :s32), "positions" => other})
      ]

      assert {:error, {:invalid_input, message}} = KerasONNX.infer_batch(session, mixed)
      assert message =~ "positions"
    end

    test "refuses what cannot be stacked" do
      {:ok, session} = KerasONNX.load!(@tiny)
      ids = Input.new!(Tensor.new([Enum.to_list(1..8)], type: :s64))

      assert {:error, {:invalid_input, _}} = KerasONNX.infer_batch(session, [])
      assert {:error, {:invalid_input, _}} = KerasONNX.infer_batch(session, [ids, :nope])

      short = Input.new!(Tensor.new([Enum.to_list(1..4)], type: :s64))
      assert {:error, {:invalid_input, _}} = KerasONNX.infer_batch(session, [ids, short])

      as_s32 = Input.new!(Tensor.new([Enum.to_list(1..8)], type: :s32))
      assert {:error, {:invalid_input, _}} = KerasONNX.infer_batch(session, [ids, as_s32])

      wrong_name = Input.new!(%{"tokens" => Tensor.new([Enum.to_list(1..8)], type: :s64)})
      assert {:error, {:invalid_input, _}} = KerasONNX.infer_batch(session, [ids, wrong_name])
    end
  end

  describe "metadata/1 and close/1" do
    test "report the real inputs, outputs, provider and runtime version" do
      {:ok, session} = KerasONNX.load!(@positional)
      meta = KerasONNX.metadata(session)

      assert [
               %{name: "input_ids", type: {:s, 32}, shape: {nil, 8}},
               %{name: "positions", shape: {8, 4}}
             ] = meta.inputs

      assert [%{name: "logits", type: {:f, 32}, shape: {nil, 6}}] = meta.outputs
      assert meta.provider == "CPUExecutionProvider"
      assert meta.runtime_version == Thunderbolt.runtime_info()["version"]
      assert meta.producer == "thunderbolt-fixtures"
      assert meta.opset == 17
      assert KerasONNX.close(session) == :ok
    end
  end

  describe "Input.new/4" do
    test "fills shape and dtype from the tensor" do
      t = Tensor.new([[1.0, 2.0]])
      assert {:ok, %Input{shape: {1, 2}, dtype: {:f, 32}, metadata: %{}}} = Input.new(t)
      assert {:ok, %Input{shape: {1, 2}}} = Input.new(t, [1, 2], :f32)
    end

    test "checks the tensor, shape, dtype and metadata" do
      t = Tensor.new([[1, 2]], type: :s32)
      assert {:error, {:invalid_input, _}} = Input.new([[1, 2]])
      assert {:error, {:invalid_input, _}} = Input.new(t, {2, 1})
      assert {:error, {:invalid_input, _}} = Input.new(t, [1 | 2])
      assert {:error, {:invalid_input, _}} = Output.new(t, [1 | 2], nil, 1)
      assert {:error, {:invalid_input, _}} = Input.new(t, nil, :s64)
      assert {:error, {:invalid_input, _}} = Input.new(t, nil, :complex)
      assert {:error, {:invalid_input, _}} = Input.new(t, nil, nil, class_names: [])
      assert_raise ArgumentError, fn -> Input.new!(t, {2, 1}) end
    end

    test "a map of tensors, with shapes and dtypes by name" do
      a = Tensor.new([[1, 2]], type: :s32)
      b = Tensor.new([1.0], type: :f32)

      assert {:ok, %Input{tensor: %{"a" => ^a, "b" => ^b}, shape: %{"a" => {1, 2}, "b" => {1}}}} =
               Input.new(%{a: a, b: b}, %{a: {1, 2}}, %{"b" => :f32})

      assert {:error, {:invalid_input, message}} = Input.new(%{a: a, b: b}, %{b: {2}})
      assert message =~ "\"b\""
      assert {:error, {:invalid_input, _}} = Input.new(%{a: a}, {1, 2})
      assert {:error, {:invalid_input, _}} = Input.new(%{})
      assert {:error, {:invalid_input, _}} = Input.new(%{:a => a, "a" => a})
    end
  end

  describe "Output.new/5" do
    test "checks its fields" do
      t = Tensor.new([[0.5]], type: :f32)

      assert {:ok, %Output{shape: {1, 1}, dtype: {:f, 32}, inference_time_us: 3}} =
               Output.new(t, nil, nil, 3)

      assert {:error, {:invalid_input, _}} = Output.new(t, {1}, nil, 3)
      assert {:error, {:invalid_input, _}} = Output.new(t, nil, nil, -1)
      assert {:error, {:invalid_input, _}} = Output.new(t, nil, nil, 1.5)
      assert {:error, {:invalid_input, _}} = Output.new(%{"a" => t}, nil, nil, 1)
      assert_raise ArgumentError, fn -> Output.new!(t, nil, :s64, 1) end
    end
  end

  describe "Output.top_k/2" do
    test "indices without class names, one list per row for a batch" do
      t = Tensor.new([[0.1, 0.9, 0.5], [3.0, 1.0, 2.0]], type: :f32)
      output = Output.new!(t, nil, nil, 1)

      assert Output.top_k(output, 2) == [
               [{1, 0.8999999761581421}, {2, 0.5}],
               [{0, 3.0}, {2, 2.0}]
             ]
    end

    test "a single row, class names, ties in index order, NaN last, k beyond the size" do
      t = Tensor.new([:nan, 1.0, :infinity, 1.0], type: :f32)
      output = Output.new!(t, nil, nil, 1, %{"class_names" => ["w", "x", "y", "z"]})
      assert Output.top_k(output, 10) == [{"y", :infinity}, {"x", 1.0}, {"z", 1.0}, {"w", :nan}]

      # Fewer names than classes: the rest are indices.
      output = Output.new!(t, nil, nil, 1, %{class_names: ["w"]})
      assert Output.top_k(output, 2) == [{2, :infinity}, {1, 1.0}]

      # Names that are not a proper list label nothing.
      for names <- [["w", "x" | "y"], "wxyz", %{0 => "w"}] do
        output = Output.new!(t, nil, nil, 1, %{class_names: names})
        assert Output.top_k(output, 2) == [{2, :infinity}, {1, 1.0}]
      end
    end

    test "needs rank 1 or 2" do
      output = Output.new!(Tensor.new([[[1.0]]]), nil, nil, 1)
      assert_raise ArgumentError, fn -> Output.top_k(output, 1) end
    end
  end
end
