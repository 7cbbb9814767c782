defmodule Thunderbolt.Serving.BatchTest do
  use ExUnit.Case, async: true
  doctest Thunderbolt.Serving.Batch

  import Thunderbolt.TestModels
  alias Thunderbolt.{Error, Tensor}
  alias Thunderbolt.Serving.{Batch, Request}

  setup_all do
    %{
      dynamic: Thunderbolt.load!(fixture("batching/dynamic_rows.onnx"), pool_size: 1),
      shared: Thunderbolt.load!(fixture("batching/shared_input.onnx"), pool_size: 1)
    }
  end

  defp entry(session, inputs, outputs \\ nil) do
    {:ok, key, rows, data} = Request.new(session.inputs, session.outputs, inputs, outputs)
    {key, {rows, data}}
  end

  describe "run/4" do
    test "each request gets its own rows of every output, as if run alone", %{dynamic: s} do
      inputs =
        for rows <- [1, 3, 2, 5] do
          Tensor.new(for(r <- 1..rows, do: [r * 1.5, -r * 1.0, rows * 1.0]), type: :f32)
        end

      [{key, _} | _] = entries = Enum.map(inputs, &entry(s, &1))
      assert {:merged, results} = Batch.run(s, key, Enum.map(entries, &elem(&1, 1)), :auto)

      for {input, result} <- Enum.zip(inputs, results) do
        assert result == Thunderbolt.run(s, input)
      end
    end

    test "an input with a fixed leading dimension is fed once; fixed outputs go to everyone",
         %{shared: s} do
      w = Tensor.new(for(i <- 1..4, do: [i * 1.0, 0.5, -1.0]), type: :f32)

      inputs =
        for x <- [[[1, 2, 3, 4]], [[0, 1, 0, 1], [2, 2, 2, 2]]],
            do: [Tensor.new(x, type: :f32), w]

      [{key, _} | _] = entries = Enum.map(inputs, &entry(s, &1))

      assert {:merged, [{:ok, a}, {:ok, b}]} =
               Batch.run(s, key, Enum.map(entries, &elem(&1, 1)), :auto)

      assert a == Thunderbolt.run!(s, Enum.at(inputs, 0))
      assert b == Thunderbolt.run!(s, Enum.at(inputs, 1))
      assert a["w_copy"] == w and b["w_copy"] == w
    end

    test "honours the requested outputs", %{dynamic: s} do
      x = Tensor.new([[1.0, 2.0]], type: :f32)
      {key, e} = entry(s, x, ["row_sum"])
      assert {:merged, [{:ok, result}]} = Batch.run(s, key, [e], :auto)
      assert Map.keys(result) == ["row_sum"]
    end
  end

  describe "run/4 when the merged call fails" do
    @describetag :shared_models

    test "runs each request alone, so only the bad one fails" do
      s = Thunderbolt.load!(shared("cerebros_trained.onnx"), pool_size: 1)
      good = Tensor.new([Enum.to_list(1..40)], type: :s64)
      bad = Tensor.new([List.duplicate(5000, 40)], type: :s64)
      [{key, _} | _] = entries = Enum.map([good, bad, good], &entry(s, &1))

      assert {:separate, [{:ok, a}, {:error, %Error{kind: :onnxruntime}}, {:ok, c}]} =
               Batch.run(s, key, Enum.map(entries, &elem(&1, 1)), :auto)

      assert a == Thunderbolt.run!(s, good)
      assert c == a
    end
  end

  describe "concat/2" do
    test "joins the rows of each batched input, in request order, by binary concatenation", %{
      dynamic: s
    } do
      {key, a} = entry(s, Tensor.new([[1.0, 2.0]], type: :f32))
      {^key, b} = entry(s, Tensor.new([[3.0, 4.0], [5.0, 6.0]], type: :f32))
      [x] = Batch.concat(key, [b, a])
      assert x.shape == {3, 2}
      assert Tensor.to_list(x) == [[3.0, 4.0], [5.0, 6.0], [1.0, 2.0]]
    end
  end

  describe "split/3" do
    test "refuses a batch output without one row per input row" do
      out = %{"y" => Tensor.new([[1.0], [2.0]], type: :f32)}
      assert :error = Batch.split(out, [%{name: "y", shape: {nil, 1}}], [1, 2])
    end

    test "hands every request all of an output with a fixed leading dimension" do
      out = %{"c" => Tensor.new([1.0, 2.0], type: :f32)}
      assert {:ok, [a, b, c]} = Batch.split(out, [%{name: "c", shape: {2}}], [1, 2, 1])
      assert a == out and b == out and c == out
    end
  end
end
