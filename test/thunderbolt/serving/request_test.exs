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
    # Which requests share a batch is decided natively from what new/4
    # returns: see the BatchKey tests in native/thunderbolt_runtime/src/batch.rs
    # and the merging tests in serving_test.exs.
    test "returns the inputs in input order, as the NIF takes them" do
      x = f32([[1, 2, 3, 4], [5, 6, 7, 8]])
      w = f32(List.duplicate([1, 2, 3], 4))
      assert {:ok, [^x, ^w], nil} = Request.new([@x, @w], @outs, %{"w" => w, "x" => x}, nil)
      assert {:ok, [^x, ^w], nil} = Request.new([@x, @w], @outs, [x, w], nil)
    end

    test "returns the indices of the requested outputs" do
      x = f32([[1, 2, 3, 4]])
      w = f32(List.duplicate([1, 2, 3], 4))
      assert {:ok, _, [1, 0]} = Request.new([@x, @w], @outs, [x, w], [:w_copy, "y"])
    end

    test "a model without a batchable input takes one request of one tensor" do
      w = f32(List.duplicate([1, 2, 3], 4))
      assert {:ok, [^w], nil} = Request.new([@w], [], w, nil)
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
