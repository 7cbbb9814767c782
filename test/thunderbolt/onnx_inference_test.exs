defmodule Thunderbolt.OnnxInferenceTest do
  use ExUnit.Case, async: true
  doctest Thunderbolt.OnnxInference

  import Thunderbolt.TestModels, only: [assert_close: 2]

  alias Thunderbolt.{ModelServer, OnnxInference, Tensor, TestModels}

  @fixtures TestModels.fixture("serving")
  @opts [model_dir: @fixtures]

  setup_all do
    %{expected: TestModels.json!("serving/expected.json")}
  end

  defp logits(result, name \\ "logits"), do: result.predictions[name]["tensor"]

  describe "infer/4, the original's usage" do
    @describetag :shared_models

    test "a flat list of token ids, atom keys, empty metadata" do
      tokens = Enum.map(1..40, &rem(&1 * 11, 1000))

      {:ok, result} =
        OnnxInference.infer("cerebros_trained.onnx", %{data: tokens}, %{},
          model_dir: TestModels.dir()
        )

      assert %OnnxInference{
               model_path: "cerebros_trained.onnx",
               input: %{data: ^tokens},
               metadata: %{},
               status: :success
             } = result

      assert is_float(result.duration_ms) and result.duration_ms > 0
      assert %{"shape" => [1, 1000], "dtype" => "f32"} = result.predictions["logits"]

      session = Thunderbolt.load!(TestModels.shared("cerebros_trained.onnx"))
      {:ok, %{"logits" => direct}} = Thunderbolt.run(session, Tensor.new([tokens], type: :s64))
      assert logits(result) == Tensor.to_list(direct)
    end

    test "cerebros_mini.onnx, two inputs, from JSON" do
      json = """
      {"input_ids": {"data": #{:jiffy.encode(Enum.to_list(1..40))}, "dtype": "int32"},
       "functional_1/Add/y:0": #{:jiffy.encode(List.duplicate(List.duplicate(0.25, 64), 40))}}
      """

      {:ok, result} =
        OnnxInference.infer("cerebros_mini.onnx", :jiffy.decode(json, [:return_maps]), %{},
          model_dir: TestModels.dir(),
          top_k: 3
        )

      assert %{"shape" => [1, 1000], "top_k" => [[_, _, _]]} = result.predictions["logits"]
    end
  end

  describe "infer/4 input" do
    test "matches onnxruntime on every output", %{expected: expected} do
      {:ok, result} =
        OnnxInference.infer("tiny_text.onnx", %{data: expected["input_ids"]}, %{}, @opts)

      assert Map.keys(result.predictions) == ["logits", "probabilities"]
      assert result.predictions["logits"]["shape"] == [3, 6]
      assert_close(List.flatten(logits(result)), List.flatten(expected["tiny_text"]["logits"]))

      assert_close(
        List.flatten(logits(result, "probabilities")),
        List.flatten(expected["tiny_text"]["probabilities"])
      )
    end

    test "JSON from a tool call, string keys, gives the same result as atom keys", %{
      expected: expected
    } do
      json = ~s({"data": #{:jiffy.encode(expected["input_ids"])}, "dtype": "int64"})

      {:ok, from_json} =
        OnnxInference.infer("tiny_text.onnx", :jiffy.decode(json, [:return_maps]), %{}, @opts)

      {:ok, from_atoms} =
        OnnxInference.infer(
          "tiny_text.onnx",
          %{data: expected["input_ids"], dtype: :s64},
          %{},
          @opts
        )

      assert from_json.predictions == from_atoms.predictions
    end

    test "a 1-D list is one sample", %{expected: expected} do
      [first | _] = expected["input_ids"]
      {:ok, result} = OnnxInference.infer("tiny_text.onnx", %{"data" => first}, %{}, @opts)

      assert result.predictions["logits"]["shape"] == [1, 6]
      assert_close(List.flatten(logits(result)), hd(expected["tiny_text"]["logits"]))
    end

    test "\"shape\" reshapes flat data", %{expected: expected} do
      flat = List.flatten(expected["input_ids"])

      {:ok, result} =
        OnnxInference.infer("tiny_text.onnx", %{"data" => flat, "shape" => [3, 8]}, %{}, @opts)

      assert_close(List.flatten(logits(result)), List.flatten(expected["tiny_text"]["logits"]))

      assert {:error, {:invalid_input, message}} =
               OnnxInference.infer(
                 "tiny_text.onnx",
                 %{"data" => flat, "shape" => [2, 8]},
                 %{},
                 @opts
               )

      assert message =~ "16"
    end

    test "values take the model's declared type; dtype must still be a known name" do
      ids = Enum.to_list(1..8)
      {:ok, as_s64} = OnnxInference.infer("tiny_text.onnx", %{"data" => ids}, %{}, @opts)

      for dtype <- ["int32", "float32", "s16", "int64"] do
        {:ok, result} =
          OnnxInference.infer("tiny_text.onnx", %{"data" => ids, "dtype" => dtype}, %{}, @opts)

        assert result.predictions == as_s64.predictions
      end

      assert {:error, {:invalid_input, "unknown dtype \"complex128\""}} =
               OnnxInference.infer(
                 "tiny_text.onnx",
                 %{"data" => ids, "dtype" => "complex128"},
                 %{},
                 @opts
               )
    end

    test "a map of input names for a model with two inputs", %{expected: expected} do
      input = %{
        "input_ids" => %{"data" => expected["input_ids"], "dtype" => "int32"},
        "positions" => expected["positions"]
      }

      {:ok, result} = OnnxInference.infer("positional.onnx", input, %{}, @opts)
      assert_close(List.flatten(logits(result)), List.flatten(expected["positional"]["logits"]))

      {:ok, same} =
        OnnxInference.infer(
          "positional.onnx",
          %{input_ids: expected["input_ids"], positions: %{data: expected["positions"]}},
          %{},
          @opts
        )

      assert same.predictions == result.predictions
    end

    test "input that does not fit the model is an error that says why", %{expected: expected} do
      positions = expected["positions"]
      ids = hd(expected["input_ids"])

      cases = [
        {"positional.onnx", %{"data" => ids}, "give a map from input name"},
        {"positional.onnx", %{"input_ids" => ids}, "missing input(s) \"positions\""},
        {"positional.onnx", %{"input_ids" => ids, "positions" => positions, "extra" => [1]},
         "unknown input(s) \"extra\""},
        {"positional.onnx", %{"input_ids" => %{"values" => ids}, "positions" => positions},
         "unknown key(s) \"values\""},
        {"tiny_text.onnx", %{"data" => [1.5, 2.5]}, "not an integer"},
        {"tiny_text.onnx", %{"data" => ["a", "b"]}, "expected a number"},
        {"tiny_text.onnx", %{"data" => [[1, 2], [3]]}, "ragged"},
        {"positional.onnx", %{"input_ids" => [[1, 2], [3]], "positions" => positions},
         "input_ids: ragged"},
        {"tiny_text.onnx", %{"data" => "1 2 3"}, "\"data\" must be"},
        {"tiny_text.onnx", %{"data" => ids, "shape" => "8"}, "\"shape\" must be"},
        {"tiny_text.onnx", %{"data" => ids, "shape" => [-1, 8]}, "non-negative"},
        {"tiny_text.onnx", %{"data" => ids, "shape" => [1 | 8]}, "non-negative"},
        {"tiny_text.onnx", %{}, "missing input(s)"},
        {"tiny_text.onnx", %{"dtype" => "int64"}, "unknown input(s) \"dtype\""},
        {"tiny_text.onnx", %{:data => ids, "data" => ids}, "given twice"},
        {"tiny_text.onnx", %{1 => ids}, "keys must be strings or atoms"},
        {"tiny_text.onnx", [1, 2, 3], "input must be a map"},
        {"tiny_text.onnx", %{"data" => Enum.to_list(1..5)}, ""}
      ]

      for {model, input, fragment} <- cases do
        assert {:error, {:invalid_input, message}} =
                 OnnxInference.infer(model, input, %{}, @opts),
               "for #{inspect(input, limit: 3)}"

        assert message =~ fragment
      end
    end

    test "random malformed data is answered, never crashes" do
      # Seeded, so a failure can be replayed.
      :rand.seed(:exsss, {1, 2, 3})
      leaves = [1, -1, 7, 2.5, :nan, :infinity, "x", nil, %{}, {1}, [], 2 ** 70, -(2 ** 65)]

      rows = for n <- 1..3, do: List.duplicate(Enum.to_list(1..8), n)

      for _ <- 1..2_000 do
        data = TestModels.random_nested(leaves, rows)

        for input <- [%{"data" => data}, %{"data" => data, "dtype" => "float32"}] do
          case OnnxInference.infer("tiny_text.onnx", input, %{}, @opts) do
            {:ok, %OnnxInference{}} -> :ok
            {:error, {tag, _}} when tag in [:invalid_input, :inference_failed] -> :ok
          end
        end
      end

      # Still serving.
      assert {:ok, _} =
               OnnxInference.infer("tiny_text.onnx", %{"data" => Enum.to_list(1..8)}, %{}, @opts)
    end

    test "a token id the model cannot take fails inside ONNX Runtime" do
      assert {:error, {:inference_failed, %Thunderbolt.Error{kind: :onnxruntime}}} =
               OnnxInference.infer(
                 "tiny_text.onnx",
                 %{"data" => List.duplicate(500, 8)},
                 %{},
                 @opts
               )
    end
  end

  describe "infer/4 input size" do
    test "more elements than the limit are refused" do
      too_many = Enum.to_list(1..101)

      assert OnnxInference.infer(
               "tiny_text.onnx",
               %{"data" => too_many},
               %{},
               [max_input_elements: 100] ++ @opts
             ) ==
               {:error, {:input_too_large, %{elements: 101, limit: 100}}}

      nested = List.duplicate(Enum.to_list(1..8), 13)

      assert OnnxInference.infer(
               "tiny_text.onnx",
               %{"data" => nested},
               %{},
               [max_input_elements: 100] ++ @opts
             ) ==
               {:error, {:input_too_large, %{elements: 104, limit: 100}}}
    end

    test "ragged lists whose first rows suggest too many elements are ragged, not too large" do
      # The NIF bounds the size by the first row: 2 rows of 8 is over 10,
      # but these hold 9 elements.
      assert {:error, {:invalid_input, message}} =
               OnnxInference.infer(
                 "tiny_text.onnx",
                 %{"data" => [Enum.to_list(1..8), [1]]},
                 %{},
                 [max_input_elements: 10] ++ @opts
               )

      assert message =~ "ragged"
    end

    test "an input too big to encode on a normal scheduler is encoded on a dirty one" do
      row = Enum.to_list(1..8)
      rows = List.duplicate(row, 2_600)

      {:ok, result} = OnnxInference.infer("tiny_text.onnx", %{"data" => rows}, %{}, @opts)
      {:ok, one} = OnnxInference.infer("tiny_text.onnx", %{"data" => [row]}, %{}, @opts)

      assert result.predictions["logits"]["shape"] == [2_600, 6]

      assert Enum.uniq(result.predictions["logits"]["tensor"]) ==
               one.predictions["logits"]["tensor"]
    end

    test "a ragged list that claims far more elements than it holds is refused" do
      # Within the limit when counted (100,000 elements), 10^10 by its first
      # row: the NIF must not reserve room for the claim.
      data = [Enum.to_list(1..100_000) | List.duplicate([], 100_000)]

      assert {:error, {:invalid_input, message}} =
               OnnxInference.infer("tiny_text.onnx", %{"data" => data}, %{}, @opts)

      assert message =~ "ragged"
    end

    test "an improper list is refused" do
      assert {:error, {:invalid_input, message}} =
               OnnxInference.infer("tiny_text.onnx", %{"data" => [1, 2 | 3]}, %{}, @opts)

      assert message =~ "improper"
    end

    test "the limit counts every input together" do
      input = %{
        "input_ids" => List.duplicate(Enum.to_list(1..8), 2),
        "positions" => List.duplicate([0.0, 0.0, 0.0, 0.0], 8)
      }

      assert OnnxInference.infer("positional.onnx", input, %{}, [max_input_elements: 40] ++ @opts) ==
               {:error, {:input_too_large, %{elements: 48, limit: 40}}}

      assert {:ok, _} =
               OnnxInference.infer(
                 "positional.onnx",
                 input,
                 %{},
                 [max_input_elements: 48] ++ @opts
               )
    end

    test "a declared shape above the limit is refused without looking at the data" do
      assert OnnxInference.infer(
               "tiny_text.onnx",
               %{"data" => [1], "shape" => [1_000_000, 1_000]},
               %{},
               @opts
             ) ==
               {:error, {:input_too_large, %{elements: 1_000_000_000, limit: 1_000_000}}}
    end

    test "the default limit is a million elements" do
      assert OnnxInference.infer(
               "tiny_text.onnx",
               %{"data" => List.duplicate(1, 1_000_001)},
               %{},
               @opts
             ) ==
               {:error, {:input_too_large, %{elements: 1_000_001, limit: 1_000_000}}}
    end
  end

  describe "infer/4 model path" do
    setup do
      root =
        Path.join(System.tmp_dir!(), "tb_onnx_inference_#{System.unique_integer([:positive])}")

      models = Path.join(root, "models")
      File.mkdir_p!(models)
      File.mkdir_p!(Path.join(root, "outside"))
      File.cp!(Path.join(@fixtures, "tiny_text.onnx"), Path.join(models, "tiny_text.onnx"))
      File.cp!(Path.join(@fixtures, "tiny_text.onnx"), Path.join(root, "outside/secret.onnx"))
      File.write!(Path.join(models, "notes.txt"), "not a model")
      File.ln_s!("../outside/secret.onnx", Path.join(models, "link.onnx"))
      File.ln_s!("../outside", Path.join(models, "out"))
      File.ln_s!(Path.join(models, "tiny_text.onnx"), Path.join(models, "alias.onnx"))

      name = :"onnx_inference_server_#{System.unique_integer([:positive])}"
      start_supervised!({ModelServer, name: name, revalidate_ms: 0})
      on_exit(fn -> File.rm_rf!(root) end)
      %{root: root, models: models, opts: [model_dir: models, model_server: name]}
    end

    test "every way out of the model directory is refused", %{root: root, opts: opts} do
      for path <- [
            "../outside/secret.onnx",
            "..",
            "sub/../tiny_text.onnx",
            Path.join(root, "outside/secret.onnx"),
            "/etc/passwd",
            "/dev/zero",
            "link.onnx",
            "out/secret.onnx",
            "tiny_text.onnx\0.txt"
          ] do
        assert {:error, {:forbidden_path, _}} =
                 OnnxInference.infer(path, %{"data" => [1]}, %{}, opts),
               "for #{inspect(path)}"
      end

      assert {:error, {:forbidden_path, _}} =
               OnnxInference.infer(nil, %{"data" => [1]}, %{}, opts)

      assert ModelServer.list_models(opts[:model_server]) == []
    end

    test "inside the directory", %{models: models, opts: opts} do
      ids = %{"data" => Enum.to_list(1..8)}
      assert {:ok, by_name} = OnnxInference.infer("tiny_text.onnx", ids, %{}, opts)

      assert {:ok, by_path} =
               OnnxInference.infer(Path.join(models, "tiny_text.onnx"), ids, %{}, opts)

      assert {:ok, by_link} = OnnxInference.infer("alias.onnx", ids, %{}, opts)
      assert by_name.predictions == by_path.predictions
      assert by_name.predictions == by_link.predictions
      # One file, one cache entry, one load.
      assert %{loads: 1, models: 1} = ModelServer.stats(opts[:model_server])
    end

    test "a missing file, or not an .onnx file", %{opts: opts} do
      assert OnnxInference.infer("missing.onnx", %{"data" => [1]}, %{}, opts) ==
               {:error, {:file_not_found, "missing.onnx"}}

      assert OnnxInference.infer("notes.txt", %{"data" => [1]}, %{}, opts) ==
               {:error, {:invalid_extension, "notes.txt"}}
    end

    test "the extension rule is Path.extname/1's", %{models: models, opts: opts} do
      model = File.read!(TestModels.fixture("runtime/identity_f32.onnx"))

      for name <- [".onnx", "model.ONNX", "model.onnx.bak", "onnx"] do
        File.write!(Path.join(models, name), model)

        assert OnnxInference.infer(name, %{"data" => [1.0, 2.0, 3.0]}, %{}, opts) ==
                 {:error, {:invalid_extension, name}}
      end

      for name <- [".hidden.onnx", "two..onnx"] do
        File.write!(Path.join(models, name), model)
        assert {:ok, _} = OnnxInference.infer(name, %{"data" => [1.0, 2.0, 3.0]}, %{}, opts)
      end
    end

    test "uses the cache: no second load", %{opts: opts} do
      for _ <- 1..5,
          do:
            {:ok, _} =
              OnnxInference.infer(
                "tiny_text.onnx",
                %{"data" => [1, 2, 3, 4, 5, 6, 7, 8]},
                %{},
                opts
              )

      assert %{loads: 1, hits: 4} = ModelServer.stats(opts[:model_server])
    end

    test "a model file deleted while cached", %{models: models, opts: opts} do
      ids = %{"data" => Enum.to_list(1..8)}
      assert {:ok, _} = OnnxInference.infer("tiny_text.onnx", ids, %{}, opts)

      File.rm!(Path.join(models, "tiny_text.onnx"))

      assert OnnxInference.infer("tiny_text.onnx", ids, %{}, opts) ==
               {:error, {:file_not_found, "tiny_text.onnx"}}

      assert ModelServer.list_models(opts[:model_server]) == []
    end

    test "a model file replaced while cached is reloaded", %{models: models, opts: opts} do
      ids = %{"data" => Enum.to_list(1..8)}
      assert {:ok, before} = OnnxInference.infer("tiny_text.onnx", ids, %{}, opts)

      tmp = Path.join(models, "incoming.tmp")
      File.cp!(Path.join(@fixtures, "positional.onnx"), tmp)
      File.rename!(tmp, Path.join(models, "tiny_text.onnx"))

      assert {:error, {:invalid_input, message}} =
               OnnxInference.infer("tiny_text.onnx", ids, %{}, opts)

      assert message =~ "positions"
      assert Map.has_key?(before.predictions, "probabilities")
      assert %{reloads: 1} = ModelServer.stats(opts[:model_server])
    end
  end

  describe "infer/4 predictions" do
    test "top_k from the options or the metadata, with class names", %{expected: expected} do
      [row | _] = expected["input_ids"]
      [logits | _] = expected["tiny_text"]["logits"]
      names = ~w(a b c d e f)

      best =
        logits
        |> Enum.with_index()
        |> Enum.sort_by(fn {score, _} -> -score end)
        |> Enum.take(3)
        |> Enum.map(fn {_, i} -> i end)

      {:ok, by_opt} =
        OnnxInference.infer(
          "tiny_text.onnx",
          %{"data" => row},
          %{"class_names" => names},
          [top_k: 3] ++ @opts
        )

      {:ok, by_meta} =
        OnnxInference.infer(
          "tiny_text.onnx",
          %{"data" => row},
          %{"top_k" => 3, "class_names" => names},
          @opts
        )

      assert [top] = by_opt.predictions["logits"]["top_k"]
      assert Enum.map(top, & &1["index"]) == best
      assert Enum.map(top, & &1["label"]) == Enum.map(best, &Enum.at(names, &1))
      assert_close(Enum.map(top, & &1["score"]), Enum.map(best, &Enum.at(logits, &1)))
      assert by_meta.predictions == by_opt.predictions

      {:ok, plain} = OnnxInference.infer("tiny_text.onnx", %{"data" => row}, %{}, @opts)
      refute Map.has_key?(plain.predictions["logits"], "top_k")

      # Names that are not a proper list (an Elixir caller's mistake) label
      # nothing, and the call still answers.
      {:ok, unlabelled} =
        OnnxInference.infer(
          "tiny_text.onnx",
          %{"data" => row},
          %{"top_k" => 3, "class_names" => ["a", "b" | "c"]},
          @opts
        )

      assert [top] = unlabelled.predictions["logits"]["top_k"]
      assert Enum.map(top, & &1["label"]) == best
    end

    test "top_k for a batch gives one list per sample, labelled by index", %{expected: expected} do
      {:ok, result} =
        OnnxInference.infer(
          "tiny_text.onnx",
          %{"data" => expected["input_ids"]},
          %{},
          [top_k: 2] ++ @opts
        )

      assert [[%{"label" => i} = first, _], [_, _], [_, _]] =
               result.predictions["probabilities"]["top_k"]

      assert first["index"] == i
    end

    test "a top_k above the number of classes ranks them all" do
      # The metadata may come from a language model's tool call: a huge k
      # once sized an allocation and aborted the VM.
      for k <- [7, 10 ** 12, 10 ** 30] do
        {:ok, result} =
          OnnxInference.infer(
            "tiny_text.onnx",
            %{"data" => Enum.to_list(1..8)},
            %{"top_k" => k},
            @opts
          )

        assert [ranking] = result.predictions["logits"]["top_k"]
        assert length(ranking) == 6
      end
    end

    test ":outputs limits the outputs" do
      {:ok, result} =
        OnnxInference.infer(
          "tiny_text.onnx",
          %{"data" => Enum.to_list(1..8)},
          %{},
          [outputs: ["probabilities"]] ++ @opts
        )

      assert Map.keys(result.predictions) == ["probabilities"]
    end

    test "the result encodes to JSON and back", %{expected: expected} do
      {:ok, result} =
        OnnxInference.infer(
          "tiny_text.onnx",
          %{data: expected["input_ids"]},
          %{request: "r1", top_k: 2},
          @opts
        )

      map = OnnxInference.to_map(result)
      decoded = map |> :jiffy.encode() |> IO.iodata_to_binary() |> :jiffy.decode([:return_maps])

      assert decoded == map
      assert %{"status" => "success", "metadata" => %{"request" => "r1", "top_k" => 2}} = decoded
      assert decoded["input"] == %{"data" => expected["input_ids"]}
    end

    test "non-finite outputs become strings that JSON can carry" do
      {:ok, result} =
        OnnxInference.infer(
          "identity_f32.onnx",
          %{data: [[1.0, :nan, :infinity], [:neg_infinity, 2.0, 0.5]]},
          %{},
          model_dir: TestModels.fixture("runtime"),
          top_k: 2
        )

      assert %{"tensor" => tensor, "top_k" => [first, second]} = result.predictions["y"]
      assert tensor == [[1.0, "nan", "infinity"], ["neg_infinity", 2.0, 0.5]]
      assert [%{"index" => 2, "score" => "infinity"}, %{"index" => 0, "score" => 1.0}] = first
      assert [%{"index" => 1, "score" => 2.0}, %{"index" => 2, "score" => 0.5}] = second
      map = OnnxInference.to_map(result)

      assert map |> :jiffy.encode() |> IO.iodata_to_binary() |> :jiffy.decode([:return_maps]) ==
               map
    end
  end

  describe "infer/4 predictions against Thunderbolt.run/3" do
    # OnnxInference makes its lists in one NIF call; they must be what
    # Thunderbolt.run/3 and Tensor.to_list/2 give, for every type and shape.
    defp expected_predictions(dir, model, inputs) do
      session = Thunderbolt.load!(Path.join(dir, model))
      {:ok, outputs} = Thunderbolt.run(session, inputs)

      Map.new(outputs, fn {name, tensor} ->
        {name,
         %{
           "tensor" => Tensor.to_list(tensor, non_finite: :strings),
           "shape" => Tuple.to_list(tensor.shape),
           "dtype" => Tensor.type_string(tensor.type)
         }}
      end)
    end

    test "every element type" do
      dir = TestModels.fixture("runtime")

      for {type, data} <- [
            f32: [[1.5, -2.0, :nan], [:infinity, :neg_infinity, 0.0]],
            f64: [[1.0e300, -2.5, 3.0]],
            f16: [[1.5, -2.0, 65504.0]],
            bf16: [[1.5, -2.0, 3.0e38]],
            s8: [[-128, 0, 127]],
            s16: [[-32768, 1, 32767]],
            s32: [[-2_147_483_648, 2, 2_147_483_647]],
            s64: [[-9_223_372_036_854_775_808, 3, 9_223_372_036_854_775_807]],
            u8: [[0, 1, 255]],
            u16: [[0, 2, 65535]],
            u32: [[0, 3, 4_294_967_295]],
            u64: [[0, 4, 18_446_744_073_709_551_615]]
          ] do
        model = "identity_#{type}.onnx"
        {:ok, result} = OnnxInference.infer(model, %{"data" => data}, %{}, model_dir: dir)
        expected = expected_predictions(dir, model, Tensor.new(data, type: type))
        assert result.predictions == expected, "for #{type}"
      end

      # Bool travels as u8, as Thunderbolt.Tensor types it.
      {:ok, result} =
        OnnxInference.infer("identity_bool.onnx", %{"data" => [[1, 0, 1]]}, %{}, model_dir: dir)

      assert result.predictions["y"] == %{
               "tensor" => [[1, 0, 1]],
               "shape" => [1, 3],
               "dtype" => "u8"
             }
    end

    test "several outputs, an empty batch, empty and constant outputs" do
      dir = TestModels.fixture("runtime")
      a = [[1.0, -2.0, 3.0, -4.0], [0.5, 0.25, -0.5, 8.0]]
      b = [[2.0, 2.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0]]
      input = %{"a" => a, "b" => b, "n" => [3, -4]}
      {:ok, result} = OnnxInference.infer("multi_io.onnx", input, %{}, model_dir: dir)

      assert result.predictions ==
               expected_predictions(dir, "multi_io.onnx", %{
                 "a" => Tensor.new(a, type: :f32),
                 "b" => Tensor.new(b, type: :f32),
                 "n" => Tensor.new([3, -4], type: :s64)
               })

      empty = %{"data" => [], "shape" => [0, 4]}
      input = %{"a" => empty, "b" => empty, "n" => %{"data" => [], "shape" => [0]}}
      {:ok, result} = OnnxInference.infer("multi_io.onnx", input, %{}, model_dir: dir)
      assert %{"tensor" => [], "shape" => [0, 4], "dtype" => "f32"} = result.predictions["sum"]
      assert %{"tensor" => [], "shape" => [0]} = result.predictions["n_squared"]

      {:ok, result} =
        OnnxInference.infer("nonzero.onnx", %{"data" => [0.0, 0.0]}, %{}, model_dir: dir)

      assert result.predictions["y"] == %{"tensor" => [[]], "shape" => [1, 0], "dtype" => "s64"}

      {:ok, result} =
        OnnxInference.infer("constant_output.onnx", %{"data" => [[1.0, 2.0, 3.0]]}, %{},
          model_dir: dir
        )

      assert result.predictions ==
               expected_predictions(dir, "constant_output.onnx", Tensor.new([[1.0, 2.0, 3.0]]))
    end

    @tag :tmp_dir
    test "an output too big to list on a normal scheduler", %{tmp_dir: dir} do
      units = 25_000
      kernel = for i <- 1..units, into: <<>>, do: <<rem(i, 97) / 7::float-32-native>>

      spec = %{
        inputs: [%{name: "x", type: :f32, shape: {nil, 1}}],
        layers: [
          %{
            name: "wide",
            class_name: "Dense",
            config: %{"units" => units, "activation" => "linear"},
            inbound: ["x"],
            weights: [
              Tensor.from_binary(kernel, :f32, {1, units}),
              Tensor.from_binary(:binary.copy(<<0.5::float-32-native>>, units), :f32, {units})
            ]
          }
        ],
        outputs: [%{name: "y", source: "wide"}]
      }

      :ok = Thunderbolt.Builder.build_file(spec, Path.join(dir, "wide.onnx"))
      expected = expected_predictions(dir, "wide.onnx", Tensor.new([[2.0]]))

      # Several times: the first run is on a dirty scheduler, later ones on
      # a normal one once the run is measured to be short.
      for _ <- 1..3 do
        {:ok, result} = OnnxInference.infer("wide.onnx", %{"data" => [2.0]}, %{}, model_dir: dir)
        assert result.predictions == expected

        {:ok, result} =
          OnnxInference.infer("wide.onnx", %{"data" => [2.0]}, %{}, model_dir: dir, top_k: 2)

        assert Map.delete(result.predictions["y"], "top_k") == expected["y"]
        assert [[%{"score" => best}, _]] = result.predictions["y"]["top_k"]
        assert best == Enum.max(hd(expected["y"]["tensor"]))
      end
    end
  end

  describe "infer/4 options and metadata" do
    test "are checked" do
      input = %{"data" => Enum.to_list(1..8)}

      for opts <- [
            [top_k: 0],
            [max_input_elements: 0],
            [model_dir: 3],
            [load_options: [:a | :b]],
            [load_options: "pool_size"],
            [batch: true],
            [:top_k],
            :nope
          ] do
        assert {:error, {:invalid_option, _}} =
                 OnnxInference.infer("tiny_text.onnx", input, %{}, opts),
               "for #{inspect(opts)}"
      end

      assert {:error, {:invalid_input, _}} =
               OnnxInference.infer("tiny_text.onnx", input, nil, @opts)

      assert {:error, {:invalid_input, _}} =
               OnnxInference.infer("tiny_text.onnx", input, [top_k: 1], @opts)
    end

    test ":load_options reach the load, as a separate cache entry" do
      name = :"onnx_inference_load_opts_#{System.unique_integer([:positive])}"
      start_supervised!({ModelServer, name: name})
      opts = [model_server: name, load_options: [pool_size: 1]] ++ @opts

      assert {:ok, _} =
               OnnxInference.infer("tiny_text.onnx", %{"data" => Enum.to_list(1..8)}, %{}, opts)

      assert [%{load_opts: [pool_size: 1]}] = ModelServer.list_models(name)

      assert {:error, {:load_failed, %Thunderbolt.Error{kind: :invalid_option}}} =
               OnnxInference.infer(
                 "tiny_text.onnx",
                 %{"data" => [1]},
                 %{},
                 [load_options: [pool_size: 0]] ++ opts
               )
    end

    test ":serving routes the run through a Thunderbolt.Serving", %{expected: expected} do
      name = :"onnx_inference_serving_#{System.unique_integer([:positive])}"
      model = Path.join(@fixtures, "tiny_text.onnx")

      start_supervised!(
        {Thunderbolt.Serving, name: name, model: model, batch_size: 4, runners: 1}
      )

      input = %{"data" => expected["input_ids"]}

      {:ok, direct} = OnnxInference.infer("tiny_text.onnx", input, %{}, @opts)
      {:ok, served} = OnnxInference.infer("tiny_text.onnx", input, %{}, [serving: name] ++ @opts)

      assert served.predictions == direct.predictions
      assert {:ok, %{batches: 1, rows: 3}} = Thunderbolt.Serving.stats(name)

      assert OnnxInference.infer(
               "tiny_text.onnx",
               input,
               %{},
               [serving: :no_such_serving] ++ @opts
             ) ==
               {:error, {:inference_failed, :no_serving}}
    end
  end

  describe "format_error/1" do
    test "a sentence for every reason" do
      error = %Thunderbolt.Error{kind: :onnxruntime, message: "index out of range"}

      for {reason, expected} <- [
            {{:file_not_found, "m.onnx"}, "no model file at \"m.onnx\""},
            {{:invalid_extension, "m.txt"}, "model path \"m.txt\" does not name an .onnx file"},
            {{:invalid_input, "missing \"data\""}, "invalid input: missing \"data\""},
            {{:invalid_option, ":top_k must be a positive integer"},
             "invalid option: :top_k must be a positive integer"},
            {{:inference_failed, error}, "inference failed: index out of range"},
            {{:load_failed, error}, "the model could not be loaded: index out of range"},
            {{:inference_failed, :overloaded}, "inference failed: :overloaded"},
            {{:load_failed, {:model_server_not_running, X}},
             "{:load_failed, {:model_server_not_running, X}}"}
          ] do
        assert OnnxInference.format_error(reason) == expected
      end
    end
  end
end

defmodule Thunderbolt.OnnxInference.ConfigTest do
  # Changes the application config: not async.
  use ExUnit.Case, async: false

  alias Thunderbolt.{OnnxInference, TestModels}

  @fixtures TestModels.fixture("serving")

  setup do
    on_exit(fn ->
      Application.delete_env(:thunderbolt, :onnx_inference_servings)
      Application.delete_env(:thunderbolt, :max_input_elements)
    end)
  end

  test "config :onnx_inference_servings sends a model's calls through its serving" do
    name = :"onnx_inference_config_serving_#{System.unique_integer([:positive])}"
    model = Path.join(@fixtures, "tiny_text.onnx")
    start_supervised!({Thunderbolt.Serving, name: name, model: model, runners: 1})
    Application.put_env(:thunderbolt, :onnx_inference_servings, %{"tiny_text.onnx" => name})

    input = %{"data" => Enum.to_list(1..8)}
    assert {:ok, _} = OnnxInference.infer("tiny_text.onnx", input, %{}, model_dir: @fixtures)
    assert {:ok, %{batches: 1}} = Thunderbolt.Serving.stats(name)
    # Other models are not affected.
    other = %{
      "input_ids" => Enum.to_list(1..8),
      "positions" => List.duplicate([0.0, 0.0, 0.0, 0.0], 8)
    }

    assert {:ok, _} = OnnxInference.infer("positional.onnx", other, %{}, model_dir: @fixtures)

    assert {:ok, %{batches: 1}} = Thunderbolt.Serving.stats(name)
  end

  test "a limit beyond a machine word is no limit; a bad configured limit is an error" do
    input = %{"data" => Enum.to_list(1..8)}

    assert {:ok, _} =
             OnnxInference.infer(
               "tiny_text.onnx",
               input,
               %{},
               max_input_elements: 10 ** 30,
               model_dir: @fixtures
             )

    Application.put_env(:thunderbolt, :max_input_elements, "1000")

    assert {:error, {:invalid_option, "config :thunderbolt, :max_input_elements" <> _}} =
             OnnxInference.infer("tiny_text.onnx", input, %{}, model_dir: @fixtures)
  end

  test "config :max_input_elements sets the default limit" do
    Application.put_env(:thunderbolt, :max_input_elements, 4)

    assert OnnxInference.infer("tiny_text.onnx", %{"data" => [1, 2, 3, 4, 5]}, %{},
             model_dir: @fixtures
           ) ==
             {:error, {:input_too_large, %{elements: 5, limit: 4}}}
  end
end
