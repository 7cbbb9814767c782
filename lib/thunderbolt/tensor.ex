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
  @most_dim 0x7FFF_FFFF_FFFF_FFFF

  # Element conversion runs in the NIF (thunderbolt_runtime's number.rs):
  # done element by element in Elixir it cost more than the inference itself
  # for a 1000-class output. Tensors above this many elements convert on a
  # dirty scheduler.
  @dirty_above 20_000

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
    type =
      case opts do
        # The commonest call, without Keyword.validate!/2's general work.
        [type: name] when not is_nil(name) -> type!(name)
        opts -> default_type(data, Keyword.validate!(opts, [:type])[:type])
      end

    # One walk in the NIF finds the shape, checks every row and encodes;
    # big tensors take a dirty scheduler.
    result =
      if first_path_size(data) > @dirty_above,
        do: Thunderbolt.Native.tensor_from_nested_dirty(data, type_atom(type)),
        else: Thunderbolt.Native.tensor_from_nested(data, type_atom(type))

    case result do
      {:ok, {shape, binary}} -> %__MODULE__{type: type, shape: List.to_tuple(shape), data: binary}
      {:error, {_kind, message}} -> raise ArgumentError, message
    end
  end

  defp default_type(data, nil), do: if(all_integers?(data), do: {:s, 64}, else: {:f, 32})
  defp default_type(_data, name), do: type!(name)

  # By hand rather than with Enum.all?/2, which raises on an improper list:
  # the NIF refuses those with a message that says so.
  defp all_integers?(x) when is_integer(x), do: true
  defp all_integers?([head | tail]), do: all_integers?(head) and all_integers?(tail)
  defp all_integers?([]), do: true
  defp all_integers?(_), do: false

  defp first_path_size([first | _] = list) do
    length(list) * first_path_size(first)
  rescue
    # An improper list: the NIF refuses it with a message that says so.
    ArgumentError -> 1
  end

  defp first_path_size(_), do: 1

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
  Takes the options of `to_flat_list/2`. Raises `ArgumentError` when the
  shape does not fit the data, which only a struct built by hand can do.

      iex> Thunderbolt.Tensor.new([[1, 2], [3, 4]]) |> Thunderbolt.Tensor.to_list()
      [[1, 2], [3, 4]]
  """
  @spec to_list(t(), keyword()) :: number() | atom() | String.t() | list()
  def to_list(%__MODULE__{type: type, data: data, shape: shape}, opts \\ [])
      when is_tuple(shape),
      do: decode(data, type, non_finite(opts), Tuple.to_list(shape))

  @doc """
  The elements as one flat list.

  NaN and the infinities are the atoms `:nan`, `:infinity` and
  `:neg_infinity`, as in Nx. With `non_finite: :strings` they are the
  strings `"nan"`, `"infinity"` and `"neg_infinity"` instead, so that the
  list goes straight to a JSON encoder.

      iex> Thunderbolt.Tensor.new([[1, 2], [3, 4]], type: :f32) |> Thunderbolt.Tensor.to_flat_list()
      [1.0, 2.0, 3.0, 4.0]
      iex> Thunderbolt.Tensor.new([1.5, :nan]) |> Thunderbolt.Tensor.to_flat_list(non_finite: :strings)
      [1.5, "nan"]
  """
  @spec to_flat_list(t(), keyword()) :: [number() | atom() | String.t()]
  def to_flat_list(%__MODULE__{type: type, data: data}, opts \\ []),
    do: decode(data, type, non_finite(opts), nil)

  defp non_finite([]), do: :atoms

  defp non_finite(opts) do
    case Keyword.validate!(opts, non_finite: :atoms)[:non_finite] do
      mode when mode in [:atoms, :strings] ->
        mode

      other ->
        raise ArgumentError, ":non_finite must be :atoms or :strings, got: #{inspect(other)}"
    end
  end

  @doc """
  Whether every element is a finite number: no NaN and no infinity.
  Integer tensors always are.

      iex> Thunderbolt.Tensor.new([1.0, 2.0]) |> Thunderbolt.Tensor.finite?()
      true
      iex> Thunderbolt.Tensor.new([1.0, :nan]) |> Thunderbolt.Tensor.finite?()
      false
  """
  @spec finite?(t()) :: boolean()
  def finite?(%__MODULE__{type: type, data: data}) do
    case Thunderbolt.Native.tensor_all_finite(data, type_atom(type)) do
      {:ok, finite} -> finite
      {:error, {_kind, message}} -> raise ArgumentError, message
    end
  end

  @doc """
  The `k` largest elements of each row with their indices, best first; of
  equal values the earlier index comes first, `:infinity` ranks above every
  number and `:nan` below everything. A tensor of rank 0 or 1 is one row;
  otherwise the leading axis counts the rows. Runs in the NIF: ranking
  1000 scores in Elixir cost more than the inference.

      iex> Thunderbolt.Tensor.new([[0.5, 0.25, 0.75], [1.0, 3.0, 2.0]]) |> Thunderbolt.Tensor.top_k(2)
      [[{2, 0.75}, {0, 0.5}], [{1, 3.0}, {2, 2.0}]]
  """
  @spec top_k(t(), pos_integer()) :: [[{non_neg_integer(), number() | atom()}]]
  def top_k(%__MODULE__{type: type, shape: shape, data: data}, k) when is_integer(k) and k > 0 do
    {rows, row_len} =
      case Tuple.to_list(shape) do
        [] -> {1, 1}
        [n] -> {1, n}
        [rows | inner] -> {rows, Enum.product(inner)}
      end

    if rows * row_len == 0 do
      List.duplicate([], rows)
    else
      # No row has more than row_len to give, and k may be any integer.
      k = min(k, row_len)

      result =
        if byte_size(data) > @dirty_above * element_bytes(type),
          do: Thunderbolt.Native.tensor_top_k_dirty(data, type_atom(type), row_len, k),
          else: Thunderbolt.Native.tensor_top_k(data, type_atom(type), row_len, k)

      case result do
        {:ok, ranked} -> ranked
        {:error, {_kind, message}} -> raise ArgumentError, message
      end
    end
  end

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

  # `dims`: nil for one flat list, else the shape to nest by, which the NIF
  # checks against the data (a struct built by hand may claim any shape).
  defp decode(data, type, non_finite, dims) do
    result =
      if byte_size(data) > @dirty_above * element_bytes(type),
        do: Thunderbolt.Native.tensor_to_list_dirty(data, type_atom(type), dims, non_finite),
        else: Thunderbolt.Native.tensor_to_list(data, type_atom(type), dims, non_finite)

    case result do
      {:ok, list} -> list
      {:error, {_kind, message}} -> raise ArgumentError, message
    end
  end

  @doc false
  # Whether a struct, perhaps built by hand, holds a known type, a binary
  # and a shape of non-negative int64 dimensions; the NIFs check the data's
  # length against the shape.
  @spec well_formed?(term()) :: boolean()
  def well_formed?(%__MODULE__{type: type, shape: shape, data: data})
      when type in @types and is_tuple(shape) and is_binary(data),
      do: shape |> Tuple.to_list() |> Enum.all?(&(is_integer(&1) and &1 in 0..@most_dim))

  def well_formed?(_other), do: false

  @doc false
  # Whether `type` is one of the `{kind, bits}` types, as a struct must hold.
  @spec known_type?(term()) :: boolean()
  def known_type?(type), do: type in @types

  defimpl Inspect do
    # Lists only the elements it shows, so inspecting a big tensor in a log
    # line stays cheap; a malformed struct shows as the plain map it is.
    def inspect(%{type: type, shape: shape, data: data} = tensor, opts) do
      if Thunderbolt.Tensor.well_formed?(tensor) do
        bytes = Thunderbolt.Tensor.element_bytes(type)
        shown = min(div(byte_size(data), bytes), 8)
        head = %{tensor | data: binary_part(data, 0, shown * bytes), shape: {shown}}
        preview = Thunderbolt.Tensor.to_flat_list(head)
        more = if byte_size(data) > shown * bytes, do: ", ...", else: ""
        dims = shape |> Tuple.to_list() |> Enum.map_join(&"[#{&1}]")

        "#Thunderbolt.Tensor<#{Thunderbolt.Tensor.type_string(type)}#{dims} " <>
          "#{Enum.map_join(preview, ", ", &to_string/1)}#{more}>"
      else
        Inspect.Map.inspect(tensor, opts)
      end
    end
  end
end
