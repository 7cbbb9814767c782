defmodule Thunderbolt.Tensor do
  @moduledoc """
  A dense tensor: an element `type`, a `shape` tuple and the elements as one
  native-endian binary, in row-major order.

  Types follow Nx's conventions: `{:f, 16}`, `{:bf, 16}`, `{:f, 32}`,
  `{:f, 64}`, `{:s, 8}` to `{:s, 64}` and `{:u, 8}` to `{:u, 64}`. The
  shorthand atoms `:f32`, `:s64`, `:u8` and so on are accepted wherever a
  type is, and `:bool` means `{:u, 8}`, as in Nx.

  Floats may also be the atoms `:nan`, `:infinity` and `:neg_infinity`.

      iex> t = Thunderbolt.Tensor.new([[1, 2, 3], [4, 5, 6]], type: :s64)
      iex> {t.type, t.shape, byte_size(t.data)}
      {{:s, 64}, {2, 3}, 48}
      iex> Thunderbolt.Tensor.to_list(t)
      [[1, 2, 3], [4, 5, 6]]

  `Thunderbolt.run/3` also accepts an `Nx.Tensor` wherever it accepts a
  `Thunderbolt.Tensor`, when Nx is loaded; there is no compile-time
  dependency on Nx.
  """

  alias Thunderbolt.Error

  @enforce_keys [:type, :shape, :data]
  defstruct [:type, :shape, :data]

  @type type ::
          {:f, 16 | 32 | 64}
          | {:bf, 16}
          | {:s, 8 | 16 | 32 | 64}
          | {:u, 8 | 16 | 32 | 64}
  @type type_name ::
          type()
          | :f16
          | :bf16
          | :f32
          | :f64
          | :s8
          | :s16
          | :s32
          | :s64
          | :u8
          | :u16
          | :u32
          | :u64
          | :bool
  @type shape :: tuple()
  @type t :: %__MODULE__{type: type(), shape: shape(), data: binary()}

  @shorthand %{
    f16: {:f, 16},
    bf16: {:bf, 16},
    f32: {:f, 32},
    f64: {:f, 64},
    s8: {:s, 8},
    s16: {:s, 16},
    s32: {:s, 32},
    s64: {:s, 64},
    u8: {:u, 8},
    u16: {:u, 16},
    u32: {:u, 32},
    u64: {:u, 64},
    bool: {:u, 8}
  }
  @types @shorthand |> Map.values() |> Enum.uniq()

  @doc """
  Normalises a type name to Nx's tuple form.

      iex> Thunderbolt.Tensor.type(:f32)
      {:ok, {:f, 32}}
      iex> Thunderbolt.Tensor.type({:bf, 16})
      {:ok, {:bf, 16}}
      iex> {:error, %Thunderbolt.Error{kind: :invalid_input}} = Thunderbolt.Tensor.type(:f128)
  """
  @spec type(term()) :: {:ok, type()} | {:error, Error.t()}
  def type(type) when type in @types, do: {:ok, type}
  def type(name) when is_map_key(@shorthand, name), do: {:ok, Map.fetch!(@shorthand, name)}

  def type(other) do
    {:error,
     Error.new(
       :invalid_input,
       "unknown tensor type #{inspect(other)}; expected one of " <>
         Enum.map_join(Map.keys(@shorthand), ", ", &inspect/1) <> " or their {kind, bits} forms"
     )}
  end

  @doc """
  Builds a tensor from a number or nested lists of numbers.

  ## Options

    * `:type` — the element type. Defaults to `{:s, 64}` when every element
      is an integer and `{:f, 32}` otherwise, as Nx does.

  Raises `ArgumentError` for ragged lists, non-numbers or integers that do
  not fit the type.

      iex> Thunderbolt.Tensor.new(1.5).shape
      {}
      iex> Thunderbolt.Tensor.new([1.0, 2.0]) |> Thunderbolt.Tensor.to_flat_list()
      [1.0, 2.0]
      iex> Thunderbolt.Tensor.new([[1], [2]], type: :u8).shape
      {2, 1}
  """
  @spec new(number() | atom() | list(), keyword()) :: t()
  def new(data, opts \\ []) do
    opts = Keyword.validate!(opts, [:type])
    shape = infer_shape!(data)
    flat = if is_list(data), do: List.flatten(data), else: [data]

    type =
      case opts[:type] do
        nil -> if Enum.all?(flat, &is_integer/1), do: {:s, 64}, else: {:f, 32}
        name -> type!(name)
      end

    %__MODULE__{type: type, shape: shape, data: encode!(flat, type)}
  end

  @doc """
  Wraps a native-endian binary as a tensor of `type` and `shape`.

  Raises `ArgumentError` when the binary's size does not match.

      iex> t = Thunderbolt.Tensor.from_binary(<<1::32-native, 2::32-native>>, :s32, {2})
      iex> Thunderbolt.Tensor.to_flat_list(t)
      [1, 2]
  """
  @spec from_binary(binary(), type_name(), shape() | [non_neg_integer()]) :: t()
  def from_binary(data, type, shape) when is_binary(data) do
    type = type!(type)
    shape = if is_list(shape), do: List.to_tuple(shape), else: shape
    validate_shape!(shape)
    expected = element_count(shape) * element_bytes(type)

    if byte_size(data) != expected do
      raise ArgumentError,
            "a #{type_string(type)} tensor of shape #{inspect(shape)} needs #{expected} bytes, got #{byte_size(data)}"
    end

    %__MODULE__{type: type, shape: shape, data: data}
  end

  @doc """
  The elements as nested lists, following the shape. A scalar becomes a number.

      iex> Thunderbolt.Tensor.new([[1, 2], [3, 4]]) |> Thunderbolt.Tensor.to_list()
      [[1, 2], [3, 4]]
  """
  @spec to_list(t()) :: number() | atom() | list()
  def to_list(%__MODULE__{shape: {}} = tensor), do: hd(to_flat_list(tensor))

  def to_list(%__MODULE__{shape: shape} = tensor) do
    tensor |> to_flat_list() |> nest(Tuple.to_list(shape))
  end

  @doc """
  The elements as one flat list.

      iex> Thunderbolt.Tensor.new([[1, 2], [3, 4]], type: :f32) |> Thunderbolt.Tensor.to_flat_list()
      [1.0, 2.0, 3.0, 4.0]
  """
  @spec to_flat_list(t()) :: [number() | atom()]
  def to_flat_list(%__MODULE__{type: type, data: data}), do: decode(data, type)

  @doc """
  Gives the tensor a new shape with the same number of elements. One
  dimension may be `:auto`.

      iex> Thunderbolt.Tensor.new([1, 2, 3, 4]) |> Thunderbolt.Tensor.reshape({2, :auto}) |> Map.get(:shape)
      {2, 2}
  """
  @spec reshape(t(), tuple() | list()) :: t()
  def reshape(%__MODULE__{shape: old} = tensor, shape) do
    shape = if is_list(shape), do: List.to_tuple(shape), else: shape
    count = element_count(old)
    dims = Tuple.to_list(shape)

    dims =
      case Enum.count(dims, &(&1 == :auto)) do
        0 ->
          dims

        1 ->
          known = dims |> Enum.reject(&(&1 == :auto)) |> Enum.product()

          if known == 0 or rem(count, known) != 0 do
            raise ArgumentError, "cannot reshape #{inspect(old)} into #{inspect(shape)}"
          end

          Enum.map(dims, fn d -> if d == :auto, do: div(count, known), else: d end)

        _ ->
          raise ArgumentError, "only one dimension may be :auto, got #{inspect(shape)}"
      end

    new_shape = List.to_tuple(dims)
    validate_shape!(new_shape)

    if element_count(new_shape) != count do
      raise ArgumentError,
            "cannot reshape #{inspect(old)} (#{count} elements) into #{inspect(new_shape)}"
    end

    %{tensor | shape: new_shape}
  end

  @doc """
  Number of elements.

      iex> Thunderbolt.Tensor.new([[1, 2, 3]]) |> Thunderbolt.Tensor.size()
      3
  """
  @spec size(t()) :: non_neg_integer()
  def size(%__MODULE__{shape: shape}), do: element_count(shape)

  @doc """
  Converts to an `Nx.Tensor`. Needs Nx at run time.
  """
  @spec to_nx(t()) :: struct()
  def to_nx(%__MODULE__{type: type, shape: shape, data: data}) do
    nx = nx!()
    data |> nx.from_binary(type) |> nx.reshape(shape)
  end

  @doc """
  Converts an `Nx.Tensor` (or returns a `Thunderbolt.Tensor` as it is).
  Needs Nx at run time for an `Nx.Tensor`.
  """
  @spec from_nx(struct()) :: t()
  def from_nx(%__MODULE__{} = tensor), do: tensor

  def from_nx(%{__struct__: Nx.Tensor} = tensor) do
    nx = nx!()
    from_binary(nx.to_binary(tensor), nx.type(tensor), nx.shape(tensor))
  end

  @doc false
  # Anything `Thunderbolt.run/3` accepts as a tensor, as a tensor.
  @spec coerce(term()) :: {:ok, t()} | {:error, Error.t()}
  def coerce(%__MODULE__{} = tensor), do: {:ok, tensor}

  def coerce(%{__struct__: Nx.Tensor} = tensor) do
    {:ok, from_nx(tensor)}
  rescue
    e in [ArgumentError, UndefinedFunctionError] ->
      {:error, Error.new(:invalid_input, "could not convert Nx tensor: #{Exception.message(e)}")}
  end

  def coerce(other) do
    {:error,
     Error.new(
       :invalid_input,
       "expected a Thunderbolt.Tensor or Nx.Tensor, got: #{inspect(other, limit: 5)}"
     )}
  end

  @doc false
  # The atom the NIF uses for a type, `{:f, 32}` -> `:f32`, and back. Both
  # run on every inference, so they are function clauses, not string work.
  @spec type_atom(type()) :: atom()
  @spec from_type_atom(atom()) :: type()
  for {kind, bits} = type <- @types do
    atom = :"#{kind}#{bits}"
    def type_atom(unquote(type)), do: unquote(atom)
    def from_type_atom(unquote(atom)), do: unquote(type)
  end

  @doc false
  @spec type_string(type()) :: String.t()
  def type_string({kind, bits}), do: "#{kind}#{bits}"

  @doc false
  @spec element_bytes(type()) :: pos_integer()
  def element_bytes({_, bits}), do: div(bits, 8)

  @doc false
  @spec element_count(tuple()) :: non_neg_integer()
  def element_count(shape), do: shape |> Tuple.to_list() |> Enum.product()

  defp type!(name) do
    case type(name) do
      {:ok, type} -> type
      {:error, error} -> raise ArgumentError, error.message
    end
  end

  defp nx! do
    if Code.ensure_loaded?(Nx) do
      Nx
    else
      raise ArgumentError, "Nx is not available; add {:nx, ...} to your deps to use Nx tensors"
    end
  end

  defp validate_shape!(shape) when is_tuple(shape) do
    unless shape |> Tuple.to_list() |> Enum.all?(&(is_integer(&1) and &1 >= 0)) do
      raise ArgumentError, "a shape is a tuple of non-negative integers, got #{inspect(shape)}"
    end
  end

  defp validate_shape!(shape),
    do: raise(ArgumentError, "a shape is a tuple, got #{inspect(shape)}")

  defp infer_shape!(x) when is_number(x) or x in [:nan, :infinity, :neg_infinity], do: {}

  defp infer_shape!([]), do: {0}

  defp infer_shape!([first | _] = list) when is_list(list) do
    inner = infer_shape!(first)

    Enum.each(list, fn item ->
      if infer_shape!(item) != inner do
        raise ArgumentError, "ragged list: every row must have shape #{inspect(inner)}"
      end
    end)

    Tuple.insert_at(inner, 0, length(list))
  end

  defp infer_shape!(other),
    do: raise(ArgumentError, "expected a number or a list of numbers, got #{inspect(other)}")

  defp nest(flat, [_]), do: flat

  defp nest(flat, [outer | inner]) do
    case Enum.product(inner) do
      # Rows of zero elements: keep the outer structure.
      0 -> List.duplicate(nest([], inner), outer)
      chunk -> flat |> Enum.chunk_every(chunk) |> Enum.map(&nest(&1, inner))
    end
  end

  # Encoding

  defp encode!(flat, {:s, bits}) do
    {min, max} = {-Bitwise.bsl(1, bits - 1), Bitwise.bsl(1, bits - 1) - 1}
    for x <- flat, into: <<>>, do: <<check_int!(x, min, max, :s, bits)::signed-size(bits)-native>>
  end

  defp encode!(flat, {:u, bits}) do
    max = Bitwise.bsl(1, bits) - 1
    for x <- flat, into: <<>>, do: <<check_int!(x, 0, max, :u, bits)::unsigned-size(bits)-native>>
  end

  defp encode!(flat, {:f, bits}), do: for(x <- flat, into: <<>>, do: encode_float(x, bits))

  defp encode!(flat, {:bf, 16}), do: for(x <- flat, into: <<>>, do: encode_bf16(x))

  defp check_int!(x, min, max, _kind, _bits) when is_integer(x) and x >= min and x <= max, do: x

  defp check_int!(x, _min, _max, kind, bits) when is_integer(x),
    do: raise(ArgumentError, "#{x} does not fit in #{kind}#{bits}")

  defp check_int!(x, _min, _max, kind, bits),
    do: raise(ArgumentError, "#{inspect(x)} is not an integer, as #{kind}#{bits} needs")

  defp encode_float(x, bits) when is_number(x), do: <<x::float-size(bits)-native>>
  defp encode_float(:nan, 16), do: <<0x7E00::16-native>>
  defp encode_float(:nan, 32), do: <<0x7FC00000::32-native>>
  defp encode_float(:nan, 64), do: <<0x7FF8000000000000::64-native>>
  defp encode_float(:infinity, 16), do: <<0x7C00::16-native>>
  defp encode_float(:infinity, 32), do: <<0x7F800000::32-native>>
  defp encode_float(:infinity, 64), do: <<0x7FF0000000000000::64-native>>
  defp encode_float(:neg_infinity, 16), do: <<0xFC00::16-native>>
  defp encode_float(:neg_infinity, 32), do: <<0xFF800000::32-native>>
  defp encode_float(:neg_infinity, 64), do: <<0xFFF0000000000000::64-native>>

  defp encode_float(x, bits),
    do: raise(ArgumentError, "#{inspect(x)} is not a number, as f#{bits} needs")

  # bf16 is the top half of an f32, rounded to nearest even.
  defp encode_bf16(x) do
    <<bits::32-native>> = encode_float(x, 32)

    rounded =
      if Bitwise.band(bits, 0x7F800000) == 0x7F800000 and Bitwise.band(bits, 0x7FFFFF) != 0 do
        Bitwise.bsr(bits, 16) |> Bitwise.bor(0x40)
      else
        lsb = Bitwise.band(Bitwise.bsr(bits, 16), 1)
        Bitwise.bsr(bits + 0x7FFF + lsb, 16)
      end

    <<Bitwise.band(rounded, 0xFFFF)::16-native>>
  end

  # Decoding

  defp decode(data, {:s, bits}), do: for(<<x::signed-size(bits)-native <- data>>, do: x)
  defp decode(data, {:u, bits}), do: for(<<x::unsigned-size(bits)-native <- data>>, do: x)

  defp decode(data, {:f, bits}) do
    bytes = div(bits, 8)
    for <<chunk::binary-size(bytes) <- data>>, do: decode_float(chunk, bits)
  end

  defp decode(data, {:bf, 16}) do
    for <<half::16-native <- data>>, do: decode_float(<<Bitwise.bsl(half, 16)::32-native>>, 32)
  end

  defp decode_float(chunk, bits) do
    case chunk do
      <<x::float-size(bits)-native>> -> x
      _ -> decode_special(chunk, bits)
    end
  end

  defp decode_special(chunk, bits) do
    <<raw::size(bits)-native>> = chunk

    {sign_shift, mantissa_mask} =
      %{16 => {15, 0x3FF}, 32 => {31, 0x7FFFFF}, 64 => {63, 0xFFFFFFFFFFFFF}}[bits]

    cond do
      Bitwise.band(raw, mantissa_mask) != 0 -> :nan
      Bitwise.bsr(raw, sign_shift) == 1 -> :neg_infinity
      true -> :infinity
    end
  end

  defimpl Inspect do
    def inspect(%{type: type, shape: shape} = tensor, _opts) do
      dims = shape |> Tuple.to_list() |> Enum.map_join(&"[#{&1}]")
      preview = tensor |> Thunderbolt.Tensor.to_flat_list() |> Enum.take(8)
      more = if Thunderbolt.Tensor.size(tensor) > 8, do: ", ...", else: ""

      "#Thunderbolt.Tensor<#{Thunderbolt.Tensor.type_string(type)}#{dims} " <>
        "#{Enum.map_join(preview, ", ", &to_string/1)}#{more}>"
    end
  end
end
