defmodule Thunderbolt.MCP.ToolsTest do
  use ExUnit.Case, async: true
  doctest Thunderbolt.MCP.Tools

  import Thunderbolt.TestModels, only: [assert_close: 3]

  alias Thunderbolt.MCP.Tools
  alias Thunderbolt.{Tensor, TestModels}

  @moduletag :capture_log
  @version "2025-11-25"
  @ids [3, 1, 4, 1, 5, 9, 2, 6]

  setup context do
    case context do
      %{tmp_dir: dir} ->
        for name <- ["tiny_text.onnx", "positional.onnx"] do
          File.cp!(TestModels.fixture("serving/#{name}"), Path.join(dir, name))
        end

        %{dir: dir}

      _doctest ->
        :ok
    end
  end

  defp call(name, arguments, dir, version \\ @version) do
    {:ok, result} = Tools.call(name, arguments, model_dir: dir, version: version)
    result
  end

  defp error_text(%{"isError" => true, "content" => [%{"type" => "text", "text" => text}]}),
    do: text

  describe "list/1" do
    test "every tool has a description, an object input schema and an output schema" do
      for tool <- Tools.list(@version) do
        assert tool["name"] in Tools.names()
        assert tool["inputSchema"]["type"] == "object"
        assert tool["inputSchema"]["additionalProperties"] == false
        assert tool["outputSchema"]["type"] == "object"
        assert tool["description"] =~ ~r/[a-z]{4,}/
      end
    end

    test "required arguments are declared" do
      schemas = Map.new(Tools.list(@version), &{&1["name"], &1["inputSchema"]})
      assert schemas["onnx_infer"]["required"] == ["model", "input"]
      assert schemas["model_info"]["required"] == ["model"]
      refute Map.has_key?(schemas["list_models"], "required")
    end

    test "before 2025-06-18 there is no output schema or title" do
      for version <- ["2025-03-26", "2024-11-05", nil], tool <- Tools.list(version) do
        refute Map.has_key?(tool, "outputSchema")
        refute Map.has_key?(tool, "title")
      end
    end
  end

  describe "call/3: onnx_infer" do
    @describetag :tmp_dir

    test "returns every output, equal to Thunderbolt.run on the same input", %{dir: dir} do
      result =
        call("onnx_infer", %{"model" => "tiny_text.onnx", "input" => %{"data" => [@ids]}}, dir)

      assert result["isError"] == false
      %{"model" => "tiny_text.onnx", "predictions" => predictions} = result["structuredContent"]
      assert Map.keys(predictions) |> Enum.sort() == ["logits", "probabilities"]

      session = Thunderbolt.load!(Path.join(dir, "tiny_text.onnx"))
      expected = Thunderbolt.run!(session, Tensor.new([@ids], type: :s64))

      for {name, tensor} <- expected do
        assert predictions[name]["shape"] == [1, 6]
        assert predictions[name]["dtype"] == "f32"

        assert_close(
          List.flatten(predictions[name]["tensor"]),
          Tensor.to_flat_list(tensor),
          rtol: 0.0,
          atol: 0.0
        )
      end
    end

    test "top_k ranks each output", %{dir: dir} do
      result =
        call(
          "onnx_infer",
          %{"model" => "tiny_text.onnx", "input" => %{"data" => @ids}, "top_k" => 3},
          dir
        )

      [ranked] = result["structuredContent"]["predictions"]["probabilities"]["top_k"]
      scores = Enum.map(ranked, & &1["score"])
      assert length(ranked) == 3
      assert scores == Enum.sort(scores, :desc)
      [row] = result["structuredContent"]["predictions"]["probabilities"]["tensor"]
      assert hd(scores) == Enum.max(row)
    end

    test "runs a model with two inputs named in the input object", %{dir: dir} do
      positions = for i <- 0..7, do: for(j <- 0..3, do: (i - j) / 10)
      input = %{"input_ids" => %{"data" => [@ids]}, "positions" => %{"data" => positions}}
      result = call("onnx_infer", %{"model" => "positional.onnx", "input" => input}, dir)

      session = Thunderbolt.load!(Path.join(dir, "positional.onnx"))

      %{"logits" => expected} =
        Thunderbolt.run!(session, %{
          "input_ids" => Tensor.new([@ids], type: :s32),
          "positions" => Tensor.new(positions, type: :f32)
        })

      assert_close(
        List.flatten(result["structuredContent"]["predictions"]["logits"]["tensor"]),
        Tensor.to_flat_list(expected),
        rtol: 0.0,
        atol: 0.0
      )
    end

    test "refuses bad arguments with a message that says what to send", %{dir: dir} do
      input = %{"data" => [@ids]}

      for {arguments, expected} <- [
            {%{"input" => input}, ~s("model" is required)},
            {%{"model" => 3, "input" => input}, ~s("model" must be a non-empty string)},
            {%{"model" => "", "input" => input}, ~s("model" must be a non-empty string)},
            {%{"model" => "tiny_text.onnx"}, ~s("input" is required)},
            {%{"model" => "tiny_text.onnx", "input" => [1, 2]}, "got an array"},
            {%{"model" => "tiny_text.onnx", "input" => %{}}, "got an empty object"},
            {%{"model" => "tiny_text.onnx", "input" => input, "top_k" => 0}, "got 0"},
            {%{"model" => "tiny_text.onnx", "input" => input, "top_k" => "3"}, "got a string"},
            {%{"model" => "tiny_text.onnx", "input" => input, "top_k" => 1001}, "got 1001"},
            {%{"model" => "tiny_text.onnx", "input" => input, "k" => 1}, ~s(unknown "k")}
          ] do
        text = error_text(call("onnx_infer", arguments, dir))
        assert text =~ "Invalid arguments"
        assert text =~ expected, inspect({arguments, text})
      end
    end

    test "a missing model, a path escape and a malformed input are tool errors", %{dir: dir} do
      outside = Path.join(Path.dirname(dir), "outside_#{System.unique_integer([:positive])}.onnx")
      File.cp!(Path.join(dir, "tiny_text.onnx"), outside)
      on_exit(fn -> File.rm(outside) end)
      File.ln_s!(outside, Path.join(dir, "link.onnx"))

      for {model, input, expected} <- [
            {"nope.onnx", %{"data" => @ids}, "Model not found"},
            {"../#{Path.basename(outside)}", %{"data" => @ids}, "Forbidden model path"},
            {outside, %{"data" => @ids}, "Forbidden model path"},
            {"link.onnx", %{"data" => @ids}, "Forbidden model path"},
            {"tiny_text.onnx", %{"data" => ["a", "b"]}, "invalid input"},
            {"tiny_text.onnx", %{"data" => [[1, 2], [3]]}, "invalid input"},
            {"tiny_text.onnx", %{"data" => @ids, "shape" => "8"}, "invalid input"},
            {"tiny_text.onnx", %{"values" => @ids}, "invalid input"},
            {"tiny_text.onnx", %{"data" => Enum.to_list(1..9)}, "invalid input"},
            {"tiny_text.onnx", %{"data" => @ids, "dtype" => "complex128"}, "unknown dtype"}
          ] do
        result = call("onnx_infer", %{"model" => model, "input" => input}, dir)
        assert error_text(result) =~ expected, inspect({model, input})
        refute Map.has_key?(result, "structuredContent")
      end
    end

    test "an input over the element limit is refused before it is built", %{dir: dir} do
      data = List.duplicate(1, 1_000_001)

      result =
        call("onnx_infer", %{"model" => "tiny_text.onnx", "input" => %{"data" => data}}, dir)

      assert error_text(result) =~ "more than the limit of 1000000"
    end

    test "an out-of-range token id is reported, not raised", %{dir: dir} do
      input = %{"data" => [[999_999, 1, 2, 3, 4, 5, 6, 7]]}
      result = call("onnx_infer", %{"model" => "tiny_text.onnx", "input" => input}, dir)
      assert error_text(result) =~ ~r/inference failed|invalid input/
    end
  end

  describe "call/3: list_models and model_info" do
    @describetag :tmp_dir

    test "list_models lists both models with their signatures", %{dir: dir} do
      %{"structuredContent" => listing} = call("list_models", %{}, dir)
      assert listing["count"] == 2
      assert Enum.map(listing["models"], & &1["model"]) == ["positional.onnx", "tiny_text.onnx"]
      tiny = Enum.find(listing["models"], &(&1["model"] == "tiny_text.onnx"))
      assert tiny["inputs"] == [%{"name" => "input_ids", "dtype" => "s64", "shape" => [nil, 8]}]
    end

    test "list_models takes no arguments", %{dir: dir} do
      assert error_text(call("list_models", %{"dir" => "/"}, dir)) =~ ~s(unknown "dir")
    end

    test "model_info reports the parameter count of the initializers", %{dir: dir} do
      %{"structuredContent" => info} = call("model_info", %{"model" => "tiny_text.onnx"}, dir)
      # gen_serving_fixtures.py: Embedding 50x4, Dense 4->6 with bias.
      assert info["parameter_count"] == 50 * 4 + 4 * 6 + 6
      assert info["initializer_count"] == 3
      assert info["opset"] == 17
      assert info["ir_version"] == 8
      assert info["producer"] == "thunderbolt-fixtures"
      assert length(info["outputs"]) == 2
    end

    test "model_info refuses what onnx_infer refuses", %{dir: dir} do
      File.write!(Path.join(dir, "notes.txt"), "not a model")

      for {model, expected} <- [
            {"nope.onnx", "Model not found"},
            {"../tiny_text.onnx", "Forbidden model path"},
            {"/etc/passwd", "Forbidden model path"},
            {"notes.txt", "does not name an .onnx file"}
          ] do
        assert error_text(call("model_info", %{"model" => model}, dir)) =~ expected
      end
    end
  end

  describe "call/3" do
    test "an unknown tool is an error for the protocol, not a tool result" do
      assert Tools.call("rm_rf", %{}, model_dir: "/tmp") == {:error, :unknown_tool}
    end
  end
end
