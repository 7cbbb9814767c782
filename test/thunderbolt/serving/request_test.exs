defmodule Thunderbolt.Serving.RequestTest do
  use ExUnit.Case, async: true
  doctest Thunderbolt.Serving.Request

  alias Thunderbolt.{Error, Tensor}
  alias Thunderbolt.Serving.Request

  @x %{name: "x", type: {:f, 32}, shape: {nil, nil}}
  @w %{name: "w", type: {:f, 32}, shape: {4, 3}}
  @outs [
    %{name: "y", type: {:f, 32}, shape: {nil, 3}},
    %{name: "w_copy", type: {:f, 32}, shape: {4, 3}}
  ]

  defp f32(rows), do: Tensor.new(rows, type: :f32)

  describe "new/4" do
    test "a dynamic leading dimension is the batch axis; the rest of the shape is in the key" do
      {:ok, key2, 3, [_]} = Request.new([@x], [], f32([[1, 2], [3, 4], [5, 6]]), nil)
      {:ok, key2b, 1, [_]} = Request.new([@x], [], f32([[7, 8]]), nil)
      {:ok, key3, 1, [_]} = Request.new([@x], [], f32([[1, 2, 3]]), nil)

      assert key2 == key2b
      assert key2 != key3
    end

    test "an input with a fixed leading dimension is shared: equal tensors share a key" do
      w = f32(List.duplicate([1, 2, 3], 4))
      other_w = f32(List.duplicate([1, 2, 4], 4))
      x = f32([[1, 2, 3, 4]])

      {:ok, key, 1, [_x_data]} = Request.new([@x, @w], @outs, %{"x" => x, "w" => w}, nil)
      {:ok, same, 1, _} = Request.new([@x, @w], @outs, [x, w], nil)
      {:ok, different, 1, _} = Request.new([@x, @w], @outs, %{x: x, w: other_w}, nil)

      assert key == same
      assert key != different
    end

    test "the requested outputs are part of the key" do
      x = f32([[1, 2, 3, 4]])
      w = f32(List.duplicate([1, 2, 3], 4))
      {:ok, all, _, _} = Request.new([@x, @w], @outs, [x, w], nil)
      {:ok, y_only, _, _} = Request.new([@x, @w], @outs, [x, w], [:y])
      {:ok, y_again, _, _} = Request.new([@x, @w], @outs, [x, w], ["y"])

      assert all != y_only
      assert y_only == y_again
    end

    test "a model without a batchable input gets a key of its own every time" do
      w = f32(List.duplicate([1, 2, 3], 4))
      {:ok, {nil, [{:shared, ^w}], ref1}, 1, []} = Request.new([@w], [], w, nil)
      {:ok, {nil, [{:shared, ^w}], ref2}, 1, []} = Request.new([@w], [], w, nil)
      assert is_reference(ref1) and ref1 != ref2
    end

    test "refuses inputs the model would reject, before they can spoil a batch" do
      x = f32([[1, 2, 3, 4]])

      cases = [
        {[@x], Tensor.new([[1, 2]], type: :s64), ~s|input "x" expects f32, got s64|},
        {[@x], f32([1, 2]), ~s|input "x" expects rank 2 [?, ?], got shape {2}|},
        {[@x, @w], [x, f32([[1, 2, 3]])], ~s|input "w" expects shape [4, 3], got {1, 3}|},
        {[@x], f32([]) |> Tensor.reshape({0, 2}), "a request needs at least one row"},
        {[@x, @x], [x, f32([[1, 2, 3, 4], [5, 6, 7, 8]])], "inputs disagree on the batch size"},
        {[@x, @w], x, "the model has 2 inputs"},
        {[@x, @w], [x], "the model takes 2 input(s)"},
        {[@x, @w], %{"x" => x}, ~s|missing input(s): "w"|},
        {[@x], %{"x" => x, "z" => x}, ~s|unknown input(s) "z"|},
        {[@x], %{"x" => x, x: x}, ~s|input "x" is given twice|},
        {[@x], :nope, "inputs must be a tensor, a list or a map"},
        {[@x], [[1, 2]], "expected a Thunderbolt.Tensor"}
      ]

      for {specs, inputs, message} <- cases do
        assert {:error, %Error{kind: :invalid_input, message: got}} =
                 Request.new(specs, @outs, inputs, nil)

        assert got =~ message
      end
    end

    test "refuses unknown outputs" do
      assert {:error, %Error{kind: :invalid_input, message: message}} =
               Request.new([@x], @outs, f32([[1]]), ["z"])

      assert message =~ ~s|unknown output(s) "z"|

      assert {:error, %Error{kind: :invalid_option}} = Request.new([@x], @outs, f32([[1]]), "y")
    end
  end
end
