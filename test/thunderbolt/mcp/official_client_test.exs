defmodule Thunderbolt.MCP.OfficialClientTest do
  # End to end: the official MCP Python SDK (PyPI `mcp`, pinned in
  # scripts/requirements.txt) starts `mix thunderbolt.mcp` as its subprocess
  # and talks to it over stdio; test/mcp_client/e2e_driver.py records the
  # answers and this test checks them against Thunderbolt.run/3.
  use ExUnit.Case, async: true

  import Thunderbolt.TestModels, only: [assert_close: 3]

  alias Thunderbolt.{Builder, Tensor, TestModels}

  @moduletag :tmp_dir
  @moduletag timeout: 180_000

  unless TestModels.python() do
    @moduletag skip: "needs the Python venv with the mcp package: run ./scripts/setup.sh"
  end

  @driver Path.expand("../../mcp_client/e2e_driver.py", __DIR__)
  @seq 12
  @ids [[7, 1, 49, 3, 3, 0, 12, 5, 8, 44, 2, 9], [0, 0, 0, 0, 1, 1, 1, 1, 48, 47, 46, 45]]

  # A Cerebros-shaped model, built here: Embedding(50, 8) ->
  # GlobalAveragePooling1D -> Dense(16, relu) -> Dense(10).
  defp build_model(path) do
    weights = fn shape, seed ->
      n = shape |> Tuple.to_list() |> Enum.product()
      data = for i <- 1..n, into: <<>>, do: <<:math.sin(i * seed) * 0.5::float-32-native>>
      Tensor.from_binary(data, :f32, shape)
    end

    dense = fn name, inbound, fan_in, units, activation, seed ->
      %{
        name: name,
        class_name: "Dense",
        config: %{units: units, activation: activation},
        inbound: inbound,
        weights: [weights.({fan_in, units}, seed), weights.({units}, seed + 1)]
      }
    end

    spec = %{
      name: "cerebros_small",
      inputs: [%{name: "input_ids", type: :s64, shape: {nil, @seq}}],
      layers: [
        %{
          name: "embedding",
          class_name: "Embedding",
          config: %{input_dim: 50, output_dim: 8},
          inbound: "input_ids",
          weights: [weights.({50, 8}, 1.0)]
        },
        %{name: "pooling", class_name: "GlobalAveragePooling1D", inbound: "embedding"},
        dense.("dense", "pooling", 8, 16, "relu", 2.0),
        dense.("logits", "dense", 16, 10, "linear", 4.0)
      ],
      outputs: ["logits"]
    }

    :ok = Builder.build_file(spec, path)
  end

  # Runs the driver and returns its decoded report.
  defp drive(dir, model_dir, calls) do
    log = Path.join(dir, "server.log")

    plan = %{
      "command" => System.find_executable("mix"),
      "args" => ["thunderbolt.mcp", "--no-compile", "--model-dir", model_dir],
      "cwd" => File.cwd!(),
      "env" => %{"MIX_ENV" => Atom.to_string(Mix.env())},
      "log" => log,
      "calls" =>
        Enum.map(calls, fn {key, tool, args} ->
          %{"key" => key, "tool" => tool, "arguments" => args}
        end)
    }

    plan_path = Path.join(dir, "plan.json")
    File.write!(plan_path, :jiffy.encode(plan))
    {out, status} = System.cmd(TestModels.python(), [@driver, plan_path], stderr_to_stdout: true)

    assert status == 0,
           "driver failed (#{status}):\n#{out}\nserver log:\n#{File.read!(log)}"

    out
    |> String.split("\n", trim: true)
    |> List.last()
    |> :jiffy.decode([:return_maps, :use_nil])
  end

  defp error_text(%{"isError" => true, "content" => [%{"type" => "text", "text" => text}]}),
    do: text

  defp error_text(other), do: flunk("expected a tool error, got #{inspect(other, limit: 8)}")

  test "the official client lists the tools, runs inference and gets tool errors", %{tmp_dir: dir} do
    model_dir = Path.join(dir, "models")
    File.mkdir_p!(model_dir)
    model = Path.join(model_dir, "cerebros_small.onnx")
    build_model(model)
    # A real model just outside the directory: only confinement can refuse it.
    File.cp!(model, Path.join(dir, "outside.onnx"))

    infer = fn input, extra ->
      Map.merge(%{"model" => "cerebros_small.onnx", "input" => input}, extra)
    end

    report =
      drive(dir, model_dir, [
        {"infer", "onnx_infer", infer.(%{"data" => @ids}, %{"top_k" => 3})},
        {"infer_one", "onnx_infer", infer.(%{"data" => hd(@ids), "dtype" => "int64"}, %{})},
        {"list", "list_models", %{}},
        {"info", "model_info", %{"model" => "cerebros_small.onnx"}},
        {"missing", "onnx_infer", %{"model" => "absent.onnx", "input" => %{"data" => @ids}}},
        {"escape", "onnx_infer", %{"model" => "../outside.onnx", "input" => %{"data" => @ids}}},
        {"absolute", "model_info", %{"model" => "/etc/passwd"}},
        {"malformed", "onnx_infer", infer.(%{"data" => [["not", "numbers"]]}, %{})},
        {"wrong_length", "onnx_infer", infer.(%{"data" => [[1, 2, 3]]}, %{})},
        {"oversized", "onnx_infer", infer.(%{"data" => List.duplicate(1, 1_000_001)}, %{})},
        {"bad_top_k", "onnx_infer", infer.(%{"data" => @ids}, %{"top_k" => "three"})},
        {"unknown_tool", "delete_models", %{}}
      ])

    # The handshake: the SDK asks for its latest revision, which we speak.
    assert report["initialize"]["protocolVersion"] == "2025-11-25"
    assert report["initialize"]["serverInfo"]["name"] == "thunderbolt"
    assert Enum.map(report["tools"], & &1["name"]) == ["onnx_infer", "list_models", "model_info"]
    assert report["ping"] == %{}

    # Predictions equal Thunderbolt.run on the same ids. The SDK has already
    # validated them against onnx_infer's outputSchema.
    %{"logits" => expected} =
      Thunderbolt.run!(Thunderbolt.load!(model), Tensor.new(@ids, type: :s64))

    result = report["results"]["infer"]
    assert result["isError"] == false, inspect(result, limit: 8)
    logits = result["structuredContent"]["predictions"]["logits"]
    assert logits["shape"] == [2, 10]

    assert_close(List.flatten(logits["tensor"]), Tensor.to_flat_list(expected),
      rtol: 1.0e-6,
      atol: 1.0e-7
    )

    assert [%{"type" => "text", "text" => text}] = result["content"]
    assert :jiffy.decode(text, [:return_maps]) == result["structuredContent"]

    for {row, ranked} <- Enum.zip(Tensor.to_list(expected), logits["top_k"]) do
      best = row |> Enum.with_index() |> Enum.sort_by(&elem(&1, 0), :desc) |> Enum.take(3)
      assert Enum.map(ranked, & &1["index"]) == Enum.map(best, &elem(&1, 1))
    end

    # A flat list is one sample.
    one = report["results"]["infer_one"]["structuredContent"]["predictions"]["logits"]
    assert one["shape"] == [1, 10]
    assert_close(hd(one["tensor"]), hd(Tensor.to_list(expected)), rtol: 1.0e-6, atol: 1.0e-7)

    assert %{"structuredContent" => %{"models" => [listed], "count" => 1}} =
             report["results"]["list"]

    assert listed["model"] == "cerebros_small.onnx"

    assert listed["inputs"] == [
             %{"name" => "input_ids", "dtype" => "s64", "shape" => [nil, @seq]}
           ]

    assert listed["outputs"] == [%{"name" => "logits", "dtype" => "f32", "shape" => [nil, 10]}]

    info = report["results"]["info"]["structuredContent"]
    # 714 weights (50*8 + 8*16+16 + 16*10+10) and the one-element axes
    # constant that opset 18's ReduceMean takes as an initializer.
    assert info["parameter_count"] == 714 + 1
    assert info["opset"] == 18
    assert info["producer"] == "thunderbolt"
    assert info["inputs"] == listed["inputs"]

    results = report["results"]
    assert error_text(results["missing"]) =~ ~s(Model not found: "absent.onnx")
    assert error_text(results["escape"]) =~ ~s(Forbidden model path: "../outside.onnx")
    assert error_text(results["absolute"]) =~ ~s(Forbidden model path: "/etc/passwd")
    assert error_text(results["malformed"]) =~ "invalid input"
    assert error_text(results["wrong_length"]) =~ "invalid input"
    assert error_text(results["oversized"]) =~ "more than the limit of 1000000"
    assert error_text(results["bad_top_k"]) =~ ~s("top_k" must be an integer)
    assert %{"protocol_error" => %{"code" => -32602}} = results["unknown_tool"]

    # Still answering after all of that.
    assert report["ping_after"] == %{}
  end

  @tag :shared_models
  test "the official client runs cerebros_trained.onnx and reads its 217,832 parameters",
       %{tmp_dir: dir} do
    model_dir = Path.join(dir, "models")
    File.mkdir_p!(model_dir)

    File.cp!(
      TestModels.shared("cerebros_trained.onnx"),
      Path.join(model_dir, "cerebros_trained.onnx")
    )

    ids = [Enum.map(1..40, &rem(&1 * 37, 1000))]

    report =
      drive(dir, model_dir, [
        {"infer", "onnx_infer",
         %{"model" => "cerebros_trained.onnx", "input" => %{"data" => ids}}},
        {"info", "model_info", %{"model" => "cerebros_trained.onnx"}}
      ])

    session = Thunderbolt.load!(TestModels.shared("cerebros_trained.onnx"))
    %{"logits" => expected} = Thunderbolt.run!(session, Tensor.new(ids, type: :s64))
    logits = report["results"]["infer"]["structuredContent"]["predictions"]["logits"]
    assert logits["shape"] == [1, 1000]

    assert_close(List.flatten(logits["tensor"]), Tensor.to_flat_list(expected),
      rtol: 1.0e-6,
      atol: 1.0e-7
    )

    assert report["results"]["info"]["structuredContent"]["parameter_count"] == 217_832
  end
end
