defmodule Thunderbolt.Serving.OnnxInferenceTest do
  # The seam from the serving layer: Thunderbolt.OnnxInference with a
  # `:serving` option runs through Thunderbolt.Serving, so tool calls are
  # batched. These tests look at it from the serving's side.
  use ExUnit.Case, async: true

  import Thunderbolt.TestModels
  alias Thunderbolt.{OnnxInference, Serving}

  @dir fixture("serving")
  @opts [model_dir: @dir]

  setup do
    name = {__MODULE__, make_ref()}

    pid =
      start_supervised!(
        {Serving, name: name, model: Path.join(@dir, "tiny_text.onnx"), runners: 1}
      )

    %{name: name, serving: pid}
  end

  defp queued(name) do
    {:ok, stats} = Serving.stats(name)
    stats.queue_depth
  end

  defp tokens(i), do: for(c <- 1..8, do: rem(i * 7 + c * 3, 50))

  test "concurrent tool calls are merged into one batch, each answered with its own predictions",
       %{name: name, serving: serving} do
    {:runners, sup, _, _} = List.keyfind(Supervisor.which_children(serving), :runners, 0)
    [{_, runner, _, _}] = Supervisor.which_children(sup)
    :ok = :sys.suspend(runner)

    # JSON-shaped input as an MCP client sends it: string keys, 1-D data.
    inputs = for i <- 1..10, do: %{"data" => tokens(i)}

    first =
      Task.async(fn ->
        OnnxInference.infer(
          "tiny_text.onnx",
          %{"data" => tokens(0)},
          %{},
          [serving: name] ++ @opts
        )
      end)

    wait_until(fn -> queued(name) == 1 end)

    calls =
      for input <- inputs do
        Task.async(fn ->
          OnnxInference.infer("tiny_text.onnx", input, %{}, [serving: name] ++ @opts)
        end)
      end

    wait_until(fn -> queued(name) == 11 end)
    :sys.resume(runner)
    assert {:ok, _} = Task.await(first)

    for {input, call} <- Enum.zip(inputs, calls) do
      assert {:ok, served} = Task.await(call)
      assert {:ok, direct} = OnnxInference.infer("tiny_text.onnx", input, %{}, @opts)
      # A batched matrix product may round differently from a one-row one.
      for {output, %{"tensor" => tensor, "shape" => shape}} <- direct.predictions do
        assert served.predictions[output]["shape"] == shape
        assert_close(List.flatten(served.predictions[output]["tensor"]), List.flatten(tensor))
      end
    end

    assert {:ok, %{batches: 1, batched_requests: 11}} = Serving.stats(name)
  end

  test "a serving's refusal comes back in OnnxInference's vocabulary", %{name: name} do
    assert {:error, {:invalid_input, message}} =
             OnnxInference.infer(
               "tiny_text.onnx",
               %{"data" => [1, 2, 3]},
               %{},
               [serving: name] ++ @opts
             )

    assert is_binary(message)
    assert {:ok, %{requests: 0}} = Serving.stats(name)
  end
end
