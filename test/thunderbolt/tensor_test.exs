defmodule Thunderbolt.TensorTest do
  use ExUnit.Case, async: true
  doctest Thunderbolt.Tensor

  alias Thunderbolt.Tensor

  describe "new/2" do
    test "infers s64 for integers and f32 for floats, like Nx" do
      assert %Tensor{type: {:s, 64}, shape: {2}} = Tensor.new([1, 2])
      assert %Tensor{type: {:f, 32}, shape: {2}} = Tensor.new([1, 2.5])
    end

    test "round-trips every type" do
      for {type, values} <- [
            f16: [0.5, -2.0, 1024.0],
            bf16: [1.0, -0.5, 256.0],
            f32: [1.5, -2.25, 1_073_741_824.0],
            f64: [1.0e-300, -2.5, 3.0],
            s8: [-128, 0, 127],
            s16: [-32768, 1, 32767],
            s32: [-2_147_483_648, 0, 2_147_483_647],
            s64: [-9_223_372_036_854_775_808, 0, 9_223_372_036_854_775_807],
            u8: [0, 1, 255],
            u16: [0, 65535, 7],
            u32: [0, 4_294_967_295, 9],
            u64: [0, 18_446_744_073_709_551_615, 3]
          ] do
        tensor = Tensor.new(values, type: type)
        assert Tensor.to_flat_list(tensor) == values, "#{type}"
        assert byte_size(tensor.data) == 3 * Tensor.element_bytes(tensor.type)
      end
    end

    test "bool is u8, as in Nx" do
      assert %Tensor{type: {:u, 8}} = Tensor.new([1, 0], type: :bool)
    end

    test "bf16 rounds to nearest even" do
      # 1 + 2^-8 lies exactly between two bf16 values; the tie goes to even (1.0).
      assert Tensor.new([1.00390625], type: :bf16) |> Tensor.to_flat_list() == [1.0]
      assert Tensor.new([1.01171875], type: :bf16) |> Tensor.to_flat_list() == [1.015625]
    end

    test "non-finite floats" do
      for type <- [:f16, :f32, :f64, :bf16] do
        tensor = Tensor.new([:nan, :infinity, :neg_infinity, 1.0], type: type)
        assert Tensor.to_flat_list(tensor) == [:nan, :infinity, :neg_infinity, 1.0], "#{type}"
      end
    end

    test "to_flat_list/2 gives exactly the elements, extremes included" do
      cases = [
        s8: [-128, 0, 127],
        s16: [-32_768, 255, 256, 32_767],
        s32: [-2_147_483_648, -1, 2_147_483_647],
        s64: [
          -9_223_372_036_854_775_808,
          -2_147_483_649,
          2_147_483_648,
          9_223_372_036_854_775_807
        ],
        u8: [0, 255],
        u16: [0, 65_535],
        u32: [0, 4_294_967_295],
        u64: [0, 18_446_744_073_709_551_615],
        f32: [-0.0, 1.5, 3.4028234663852886e38, 1.401298464324817e-45],
        f64: [-1.7976931348623157e308, 5.0e-324, 0.1]
      ]

      for {type, values} <- cases do
        tensor = Tensor.new(values, type: type)
        assert Tensor.to_flat_list(tensor) === values, "#{type}"
        assert Tensor.to_flat_list(tensor, non_finite: :strings) === values, "#{type}"
      end
    end

    test "non_finite: :strings gives JSON-ready names" do
      for type <- [:f16, :f32, :f64, :bf16] do
        tensor = Tensor.new([:nan, :infinity, :neg_infinity, 1.0], type: type)

        assert Tensor.to_flat_list(tensor, non_finite: :strings) ==
                 ["nan", "infinity", "neg_infinity", 1.0]
      end

      assert_raise ArgumentError, ~r/:non_finite/, fn ->
        Tensor.to_flat_list(Tensor.new([1.0]), non_finite: :null)
      end
    end

    test "nested lists keep their shape; empty lists have a zero dimension" do
      assert Tensor.new([[[1], [2]], [[3], [4]]]).shape == {2, 2, 1}
      assert Tensor.new([]).shape == {0}
      assert Tensor.new([[], []], type: :f32) |> Tensor.to_list() == [[], []]
    end

    test "rejects ragged lists, non-numbers and out-of-range integers" do
      assert_raise ArgumentError, ~r/ragged/, fn -> Tensor.new([[1, 2], [3]]) end
      assert_raise ArgumentError, ~r/expected a number/, fn -> Tensor.new(["a"]) end
      assert_raise ArgumentError, ~r/does not fit in u8/, fn -> Tensor.new([256], type: :u8) end
      assert_raise ArgumentError, ~r/not an integer/, fn -> Tensor.new([1.5], type: :s32) end
      assert_raise ArgumentError, ~r/unknown tensor type/, fn -> Tensor.new([1], type: :c64) end
    end

    test "random malformed data is a tensor or an ArgumentError, never a crash" do
      :rand.seed(:exsss, {3, 2, 1})
      leaves = [1, -1, 2.5, :nan, :neg_infinity, "x", nil, {1}, [], 2 ** 70, -(2 ** 65)]

      for _ <- 1..2_000, type <- [nil, :s64, :u8, :f32, :bf16] do
        data = Thunderbolt.TestModels.random_nested(leaves)

        try do
          assert %Tensor{} = Tensor.new(data, type: type)
        rescue
          ArgumentError -> :ok
        end
      end
    end

    test "ragged lists that claim far more elements than they hold are refused" do
      # The first row claims 100,001 rows of 100,000: 80 GB of s64, whose
      # reservation once aborted the VM.
      data = [Enum.to_list(1..100_000) | List.duplicate([], 100_000)]
      assert_raise ArgumentError, ~r/ragged/, fn -> Tensor.new(data, type: :s64) end
    end

    test "rejects improper lists at any depth" do
      for data <- [[1 | 2], [[1], [2 | 3]], [[1, 2], [3 | 4]], [[[1]], [[2] | 3]]],
          type <- [:s64, :f32, nil] do
        assert_raise ArgumentError, ~r/improper list|ragged/, fn ->
          Tensor.new(data, type: type)
        end
      end
    end
  end

  describe "from_binary/3" do
    test "checks the size against type and shape" do
      assert %Tensor{shape: {2, 2}} = Tensor.from_binary(<<0::128>>, {:s, 32}, {2, 2})
      assert %Tensor{shape: {2, 2}} = Tensor.from_binary(<<0::128>>, :s32, [2, 2])

      assert_raise ArgumentError, ~r/needs 16 bytes, got 15/, fn ->
        Tensor.from_binary(<<0::120>>, :s32, {2, 2})
      end

      assert_raise ArgumentError, ~r/non-negative/, fn -> Tensor.from_binary(<<>>, :s32, {-1}) end
    end
  end

  describe "to_list/2" do
    test "scalars become numbers" do
      assert Tensor.new(7) |> Tensor.to_list() == 7
    end

    test "nests by the shape, a leading axis of one and empty rows included" do
      t = Tensor.new([[[1.0, :nan], [:infinity, 4.0]]], type: :f32)
      assert Tensor.to_list(t) == [[[1.0, :nan], [:infinity, 4.0]]]
      assert Tensor.to_list(t, non_finite: :strings) == [[[1.0, "nan"], ["infinity", 4.0]]]
      assert Tensor.new(:nan, type: :f32) |> Tensor.to_list(non_finite: :strings) == "nan"
      empty = Tensor.from_binary(<<>>, :f32, {2, 0})
      assert Tensor.to_list(empty) == [[], []]
      assert Tensor.from_binary(<<>>, :f32, {0, 3}) |> Tensor.to_list() == []
      assert Tensor.from_binary(<<>>, :u8, {2, 1, 0}) |> Tensor.to_list() == [[[]], [[]]]
    end

    test "nests many rows as the flat list chunked would" do
      flat = Enum.to_list(1..24)
      tensor = Tensor.new(flat, type: :s32)

      for shape <- [{24}, {4, 6}, {2, 3, 4}, {1, 24, 1}, {2, 2, 2, 3}] do
        expected =
          shape
          |> Tuple.to_list()
          |> Enum.reverse()
          |> Enum.drop(-1)
          |> Enum.reduce(flat, fn d, acc -> Enum.chunk_every(acc, d) end)

        assert tensor |> Tensor.reshape(shape) |> Tensor.to_list() == expected
      end
    end

    test "a struct whose shape does not fit its data raises instead of nesting wrongly" do
      t = Tensor.new([[1, 2], [3, 4]])

      for shape <- [{3}, {4, 2}, {}, {2, 2, 2}] do
        assert_raise ArgumentError, ~r/does not fit 32 bytes of s64/, fn ->
          Tensor.to_list(%{t | shape: shape})
        end
      end

      assert_raise ArgumentError, ~r/non-negative integers/, fn ->
        Tensor.to_list(%{t | shape: {-2, -2}})
      end

      # Zero elements fit any shape with a zero in it, but not endless
      # lists of nothing.
      assert_raise ArgumentError, ~r/lists to hold 0 elements/, fn ->
        Tensor.from_binary(<<>>, :f32, {Bitwise.bsl(1, 62), 0}) |> Tensor.to_list()
      end

      assert Tensor.from_binary(<<>>, :f32, {65_536, 0}) |> Tensor.to_list() |> length() ==
               65_536
    end
  end

  describe "inspect/1" do
    test "shows the first eight elements without listing the rest" do
      big = Tensor.new(Enum.to_list(1..100_000), type: :f32)

      assert inspect(big) ==
               "#Thunderbolt.Tensor<f32[100000] 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, ...>"

      assert inspect(Tensor.new([[1, 2]])) == "#Thunderbolt.Tensor<s64[1][2] 1, 2>"
    end

    test "a malformed struct shows as the map it is" do
      bad = %{Tensor.new([1, 2]) | type: nil}
      assert inspect(bad) =~ "%{__struct__: Thunderbolt.Tensor"
      refute inspect(bad) =~ "Inspect.Error"
    end
  end

  describe "reshape/2" do
    test "keeps the elements and accepts one :auto" do
      tensor = Tensor.new(Enum.to_list(1..6))
      assert Tensor.reshape(tensor, {3, 2}) |> Tensor.to_list() == [[1, 2], [3, 4], [5, 6]]
      assert Tensor.reshape(tensor, [:auto, 3]).shape == {2, 3}
    end

    test "refuses a different element count" do
      assert_raise ArgumentError, ~r/cannot reshape/, fn ->
        Tensor.reshape(Tensor.new([1, 2, 3]), {2, 2})
      end

      assert_raise ArgumentError, ~r/only one dimension/, fn ->
        Tensor.reshape(Tensor.new([1, 2, 3, 4]), {:auto, :auto})
      end
    end
  end

  describe "top_k/2" do
    test "ranks infinities and NaN, breaks ties by index, and handles each row" do
      t = Tensor.new([:nan, 2.0, :neg_infinity, 2.0, :infinity], type: :f64)

      assert Tensor.top_k(t, 5) == [
               [{4, :infinity}, {1, 2.0}, {3, 2.0}, {2, :neg_infinity}, {0, :nan}]
             ]

      assert Tensor.top_k(Tensor.new([[3, 1], [0, 9]], type: :u8), 1) == [[{0, 3}], [{1, 9}]]
      assert Tensor.top_k(Tensor.new(7.0), 3) == [[{0, 7.0}]]
      assert Tensor.top_k(Tensor.new([[], []], type: :f32), 2) == [[], []]
      # k far above the row length: the whole row, allocated for the row.
      assert Tensor.top_k(Tensor.new([1.0, 3.0]), 10 ** 15) == [[{1, 3.0}, {0, 1.0}]]
      assert Tensor.top_k(Tensor.new([1, 3]), 10 ** 30) == [[{1, 3}, {0, 1}]]
    end
  end

  describe "coerce/1" do
    test "accepts tensors and refuses other terms with an error tuple" do
      tensor = Tensor.new([1])
      assert {:ok, ^tensor} = Tensor.coerce(tensor)
      assert {:error, %Thunderbolt.Error{kind: :invalid_input}} = Tensor.coerce([1, 2])
    end
  end

  describe "to_nx/1 and from_nx/1" do
    if Code.ensure_loaded?(Nx) do
      test "round-trip through Nx" do
        tensor = Tensor.new([[1.0, 2.0]], type: :f32)
        assert tensor |> Tensor.to_nx() |> Tensor.from_nx() == tensor
      end
    else
      test "say plainly that Nx is needed when it is absent" do
        assert_raise ArgumentError, ~r/Nx is not available/, fn ->
          Tensor.to_nx(Tensor.new([1]))
        end
      end
    end
  end
end
