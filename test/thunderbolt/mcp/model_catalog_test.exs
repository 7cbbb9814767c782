defmodule Thunderbolt.MCP.ModelCatalogTest do
  use ExUnit.Case, async: true
  doctest Thunderbolt.MCP.ModelCatalog

  alias Thunderbolt.MCP.ModelCatalog
  alias Thunderbolt.TestModels

  @moduletag :capture_log

  defp copy_fixture(name, dest), do: File.cp!(TestModels.fixture("serving/#{name}"), dest)

  describe "signature/1" do
    test "renders unknown element types as null" do
      assert ModelCatalog.signature([%{name: "seq", type: nil, shape: {}}]) ==
               [%{"name" => "seq", "dtype" => nil, "shape" => []}]
    end
  end

  describe "list/1" do
    @describetag :tmp_dir

    test "finds .onnx files in subdirectories, sorted, and nothing else", %{tmp_dir: dir} do
      File.mkdir_p!(Path.join(dir, "text/v2"))
      copy_fixture("tiny_text.onnx", Path.join(dir, "tiny_text.onnx"))
      copy_fixture("positional.onnx", Path.join(dir, "text/v2/positional.onnx"))
      File.write!(Path.join(dir, "README.md"), "models")
      File.mkdir_p!(Path.join(dir, ".cache"))
      copy_fixture("tiny_text.onnx", Path.join(dir, ".cache/hidden.onnx"))

      listing = ModelCatalog.list(dir)
      assert listing["truncated"] == false

      assert Enum.map(listing["models"], & &1["model"]) == [
               "text/v2/positional.onnx",
               "tiny_text.onnx"
             ]

      [positional, tiny] = listing["models"]
      assert Enum.map(positional["inputs"], & &1["name"]) == ["input_ids", "positions"]
      assert tiny["bytes"] == File.stat!(Path.join(dir, "tiny_text.onnx")).size
      assert Enum.map(tiny["outputs"], & &1["name"]) == ["logits", "probabilities"]
    end

    test "reports a file that does not load instead of failing the list", %{tmp_dir: dir} do
      File.write!(Path.join(dir, "broken.onnx"), "this is not protobuf")
      copy_fixture("tiny_text.onnx", Path.join(dir, "tiny_text.onnx"))

      assert %{"models" => [broken, tiny], "count" => 2} = ModelCatalog.list(dir)
      assert broken["model"] == "broken.onnx"
      assert broken["error"] =~ "could not be loaded"
      refute Map.has_key?(broken, "inputs")
      assert tiny["inputs"] != nil
    end

    test "leaves out links that lead outside and does not follow directory links",
         %{tmp_dir: dir} do
      outside = Path.join(dir, "outside")
      inside = Path.join(dir, "models")
      File.mkdir_p!(outside)
      File.mkdir_p!(inside)
      copy_fixture("tiny_text.onnx", Path.join(outside, "secret.onnx"))
      copy_fixture("tiny_text.onnx", Path.join(inside, "tiny_text.onnx"))
      File.ln_s!(Path.join(outside, "secret.onnx"), Path.join(inside, "escape.onnx"))
      File.ln_s!(Path.join(inside, "tiny_text.onnx"), Path.join(inside, "alias.onnx"))
      File.ln_s!(inside, Path.join(inside, "loop"))
      File.ln_s!(outside, Path.join(inside, "elsewhere"))

      assert Enum.map(ModelCatalog.list(inside)["models"], & &1["model"]) ==
               ["alias.onnx", "tiny_text.onnx"]
    end

    test "a missing directory lists nothing", %{tmp_dir: dir} do
      assert ModelCatalog.list(Path.join(dir, "absent")) ==
               %{"models" => [], "count" => 0, "truncated" => false}
    end
  end

  describe "info/2" do
    @describetag :tmp_dir

    test "describes a model and shares the cache entry with OnnxInference", %{tmp_dir: dir} do
      copy_fixture("positional.onnx", Path.join(dir, "positional.onnx"))
      assert {:ok, info} = ModelCatalog.info("positional.onnx", dir)
      assert info["model"] == "positional.onnx"

      assert info["inputs"] == [
               %{"name" => "input_ids", "dtype" => "s32", "shape" => [nil, 8]},
               %{"name" => "positions", "dtype" => "f32", "shape" => [8, 4]}
             ]

      assert info["opset_imports"] == [%{"domain" => "", "version" => 17}]
      assert info["parameter_count"] == 50 * 4 + 4 * 6 + 6
      assert info["providers"] == ["CPUExecutionProvider"]

      input = %{
        "input_ids" => [Enum.to_list(0..7)],
        "positions" => List.duplicate([0.0, 0.0, 0.0, 0.0], 8)
      }

      assert {:ok, _} =
               Thunderbolt.OnnxInference.infer("positional.onnx", input, %{}, model_dir: dir)

      {:ok, path} = Thunderbolt.ModelDir.resolve("positional.onnx", dir)
      cached = Enum.filter(Thunderbolt.ModelServer.list_models(), &(&1.path == path))
      assert length(cached) == 1
    end

    test "returns the reasons OnnxInference uses", %{tmp_dir: dir} do
      assert {:error, {:forbidden_path, _}} = ModelCatalog.info("../x.onnx", dir)
      assert {:error, {:file_not_found, _}} = ModelCatalog.info("x.onnx", dir)
      File.write!(Path.join(dir, "x.bin"), "")
      assert {:error, {:invalid_extension, "x.bin"}} = ModelCatalog.info("x.bin", dir)
    end

    @tag :shared_models
    test "reports cerebros_trained.onnx as its README describes it", %{tmp_dir: dir} do
      File.cp!(TestModels.shared("cerebros_trained.onnx"), Path.join(dir, "cerebros.onnx"))
      assert {:ok, info} = ModelCatalog.info("cerebros.onnx", dir)
      assert info["parameter_count"] == 217_832
      assert info["inputs"] == [%{"name" => "input_ids", "dtype" => "s64", "shape" => [nil, 40]}]
      assert info["outputs"] == [%{"name" => "logits", "dtype" => "f32", "shape" => [nil, 1000]}]
      assert {info["opset"], info["ir_version"]} == {11, 6}
    end
  end
end
