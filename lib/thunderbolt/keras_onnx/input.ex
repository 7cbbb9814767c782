defmodule Thunderbolt.KerasONNX.Input do
  @moduledoc """
  One input to `Thunderbolt.KerasONNX.infer/3`: a tensor with its shape,
  element type and free-form metadata.

  `tensor` is a `Thunderbolt.Tensor`, an `Nx.Tensor` (when Nx is loaded), or,
  for a model with several inputs, a map from input name to tensor. `shape`
  and `dtype` describe the tensor; left `nil` they are taken from it, and
  given they must agree with it. For a map of tensors they are `nil` or maps
  by the same names.

      iex> ids = Thunderbolt.Tensor.new([[1, 2, 3]], type: :s64)
      iex> {:ok, input} = Thunderbolt.KerasONNX.Input.new(ids, {1, 3}, :s64)
      iex> {input.shape, input.dtype}
      {{1, 3}, {:s, 64}}
      iex> Thunderbolt.KerasONNX.Input.new(ids, {3, 1}, :s64)
      {:error, {:invalid_input, "shape {3, 1} does not match the tensor's shape {1, 3}"}}

  `metadata` travels to the `Thunderbolt.KerasONNX.Output`; its
  `:class_names` names the classes for `Thunderbolt.KerasONNX.Output.top_k/2`.
  """

  alias Thunderbolt.Tensor

  @enforce_keys [:tensor]
  defstruct [:tensor, :shape, :dtype, metadata: %{}]

  @type tensor :: Tensor.t() | struct()
  @type t :: %__MODULE__{
          tensor: tensor() | %{String.t() => tensor()},
          shape: tuple() | %{String.t() => tuple()},
          dtype: Tensor.type() | %{String.t() => Tensor.type()},
          metadata: map()
        }

  @doc """
  Builds an input, checking that `tensor` is a tensor (or a map of them)
  and that `shape` and `dtype`, when given, agree with it. `shape` may be a
  tuple or a list; `dtype` any type name `Thunderbolt.Tensor.type/1` knows.
  """
  @spec new(term(), term(), term(), map()) :: {:ok, t()} | {:error, {:invalid_input, String.t()}}
  def new(tensor, shape \\ nil, dtype \\ nil, metadata \\ %{})

  def new(_tensor, _shape, _dtype, metadata) when not is_map(metadata),
    do: {:error, {:invalid_input, "metadata must be a map, got: #{inspect(metadata, limit: 5)}"}}

  def new(tensors, shapes, dtypes, metadata) when is_map(tensors) and not is_struct(tensors) do
    with :ok <- check_names(tensors),
         {:ok, shapes} <- per_name(shapes, tensors, "shape"),
         {:ok, dtypes} <- per_name(dtypes, tensors, "dtype"),
         {:ok, described} <- describe_each(tensors, shapes, dtypes) do
      {:ok,
       %__MODULE__{
         tensor: Map.new(tensors, fn {name, t} -> {to_string(name), t} end),
         shape: Map.new(described, fn {name, {shape, _}} -> {name, shape} end),
         dtype: Map.new(described, fn {name, {_, type}} -> {name, type} end),
         metadata: metadata
       }}
    end
  end

  def new(tensor, shape, dtype, metadata) do
    with {:ok, {shape, type}} <- describe(tensor, shape, dtype) do
      {:ok, %__MODULE__{tensor: tensor, shape: shape, dtype: type, metadata: metadata}}
    end
  end

  @doc """
  Like `new/4`, but raises `ArgumentError`.
  """
  @spec new!(term(), term(), term(), map()) :: t()
  def new!(tensor, shape \\ nil, dtype \\ nil, metadata \\ %{}) do
    case new(tensor, shape, dtype, metadata) do
      {:ok, input} -> input
      {:error, {:invalid_input, message}} -> raise ArgumentError, message
    end
  end

  @doc false
  # The input's tensors as `Thunderbolt.Tensor`s: one tensor, or a map by name.
  @spec tensors(t()) :: {:ok, Tensor.t() | %{String.t() => Tensor.t()}} | {:error, term()}
  def tensors(%__MODULE__{tensor: tensors}) when is_map(tensors) and not is_struct(tensors) do
    Enum.reduce_while(tensors, {:ok, %{}}, fn {name, tensor}, {:ok, acc} ->
      case coerce(tensor) do
        {:ok, t} -> {:cont, {:ok, Map.put(acc, name, t)}}
        error -> {:halt, error}
      end
    end)
  end

  def tensors(%__MODULE__{tensor: tensor}), do: coerce(tensor)

  @doc false
  # Whether any tensor of the input is an Nx tensor, so outputs match it.
  @spec nx?(t()) :: boolean()
  def nx?(%__MODULE__{tensor: %{__struct__: Nx.Tensor}}), do: true

  def nx?(%__MODULE__{tensor: tensors}) when is_map(tensors) and not is_struct(tensors),
    do: Enum.any?(tensors, fn {_, t} -> match?(%{__struct__: Nx.Tensor}, t) end)

  def nx?(%__MODULE__{}), do: false

  defp check_names(tensors) do
    cond do
      map_size(tensors) == 0 ->
        {:error, {:invalid_input, "a map of tensors needs at least one input"}}

      Enum.any?(Map.keys(tensors), &(not (is_binary(&1) or is_atom(&1)))) ->
        {:error, {:invalid_input, "input names must be strings or atoms"}}

      map_size(Map.new(tensors, fn {k, _} -> {to_string(k), k} end)) != map_size(tensors) ->
        {:error, {:invalid_input, "an input name is given twice (as an atom and a string)"}}

      true ->
        :ok
    end
  end

  defp per_name(nil, tensors, _what), do: {:ok, Map.new(tensors, fn {k, _} -> {k, nil} end)}

  defp per_name(given, tensors, _what) when is_map(given) do
    given = Map.new(given, fn {k, v} -> {to_string(k), v} end)
    {:ok, Map.new(tensors, fn {k, _} -> {k, Map.get(given, to_string(k))} end)}
  end

  defp per_name(other, _tensors, what) do
    {:error,
     {:invalid_input,
      "with a map of tensors, #{what} must be nil or a map by input name, got: #{inspect(other)}"}}
  end

  defp describe_each(tensors, shapes, dtypes) do
    Enum.reduce_while(tensors, {:ok, %{}}, fn {name, tensor}, {:ok, acc} ->
      case describe(tensor, shapes[name], dtypes[name]) do
        {:ok, described} ->
          {:cont, {:ok, Map.put(acc, to_string(name), described)}}

        {:error, {:invalid_input, message}} ->
          {:halt, {:error, {:invalid_input, "input #{inspect(to_string(name))}: #{message}"}}}
      end
    end)
  end

  defp describe(tensor, shape, dtype) do
    with {:ok, %Tensor{shape: actual_shape, type: actual_type}} <- coerce(tensor),
         :ok <- check_shape(shape, actual_shape),
         :ok <- check_dtype(dtype, actual_type) do
      {:ok, {actual_shape, actual_type}}
    end
  end

  defp coerce(tensor) do
    case Tensor.coerce(tensor) do
      {:ok, tensor} -> {:ok, tensor}
      {:error, error} -> {:error, {:invalid_input, error.message}}
    end
  end

  defp check_shape(nil, _actual), do: :ok

  defp check_shape(shape, actual) when is_list(shape) do
    # An improper list is no shape at all.
    if List.improper?(shape),
      do: shape_mismatch(shape, actual),
      else: check_shape(List.to_tuple(shape), actual)
  end

  defp check_shape(shape, shape), do: :ok
  defp check_shape(shape, actual), do: shape_mismatch(shape, actual)

  defp shape_mismatch(shape, actual) do
    {:error,
     {:invalid_input,
      "shape #{inspect(shape)} does not match the tensor's shape #{inspect(actual)}"}}
  end

  defp check_dtype(nil, _actual), do: :ok

  defp check_dtype(dtype, actual) do
    case Tensor.type(dtype) do
      {:ok, ^actual} ->
        :ok

      {:ok, other} ->
        {:error,
         {:invalid_input,
          "dtype #{inspect(other)} does not match the tensor's type #{inspect(actual)}"}}

      {:error, error} ->
        {:error, {:invalid_input, error.message}}
    end
  end
end
