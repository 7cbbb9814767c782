defmodule Thunderbolt.KerasONNX.Output do
  @moduledoc """
  The result of `Thunderbolt.KerasONNX.infer/3`: one output tensor with its
  shape, element type, the measured inference time and metadata.

  `tensor` is the output chosen with `infer/3`'s `:output` option, the
  model's first output by default. Every output stays reachable:
  `metadata.outputs` maps each output name to its tensor, and
  `metadata.output_name` names the one in `tensor`.

      iex> logits = Thunderbolt.Tensor.new([[0.1, 2.5, -1.0, 0.7]], type: :f32)
      iex> output = Thunderbolt.KerasONNX.Output.new!(logits, {1, 4}, :f32, 12, %{class_names: ["a", "b", "c", "d"]})
      iex> Thunderbolt.KerasONNX.Output.top_k(output, 2)
      [{"b", 2.5}, {"d", 0.699999988079071}]
  """

  alias Thunderbolt.Tensor

  @enforce_keys [:tensor]
  defstruct [:tensor, :shape, :dtype, :inference_time_us, metadata: %{}]

  @type t :: %__MODULE__{
          tensor: Tensor.t() | struct(),
          shape: tuple(),
          dtype: Tensor.type(),
          inference_time_us: non_neg_integer(),
          metadata: map()
        }

  @doc """
  Builds an output, checking that `tensor` is a tensor, that `shape` and
  `dtype` (when not `nil`) agree with it, and that `inference_time_us` is a
  non-negative integer.
  """
  @spec new(term(), term(), term(), term(), map()) ::
          {:ok, t()} | {:error, {:invalid_input, String.t()}}
  def new(tensor, shape, dtype, inference_time_us, metadata \\ %{}) do
    cond do
      not (is_integer(inference_time_us) and inference_time_us >= 0) ->
        {:error,
         {:invalid_input,
          "inference_time_us must be a non-negative integer, got: #{inspect(inference_time_us)}"}}

      is_map(tensor) and not is_struct(tensor) ->
        {:error, {:invalid_input, "an output holds one tensor, got a map"}}

      true ->
        with {:ok, input} <- Thunderbolt.KerasONNX.Input.new(tensor, shape, dtype, metadata) do
          {:ok,
           %__MODULE__{
             tensor: tensor,
             shape: input.shape,
             dtype: input.dtype,
             inference_time_us: inference_time_us,
             metadata: metadata
           }}
        end
    end
  end

  @doc """
  Like `new/5`, but raises `ArgumentError`.
  """
  @spec new!(term(), term(), term(), term(), map()) :: t()
  def new!(tensor, shape, dtype, inference_time_us, metadata \\ %{}) do
    case new(tensor, shape, dtype, inference_time_us, metadata) do
      {:ok, output} -> output
      {:error, {:invalid_input, message}} -> raise ArgumentError, message
    end
  end

  @doc """
  The `k` highest scores as `{class, score}` pairs, best first.

  The class is the name at that index in `metadata.class_names` (atom or
  string key) when present, otherwise the index. Scores are the tensor's
  values as they are (logits stay logits). Ties keep index order; NaN ranks
  last.

  A tensor of shape `{n}` or `{1, n}` gives one list; `{rows, n}` gives one
  list per row. Raises `ArgumentError` for other ranks.
  """
  @spec top_k(t(), pos_integer()) ::
          [{term(), number() | atom()}] | [[{term(), number() | atom()}]]
  def top_k(%__MODULE__{tensor: tensor, metadata: metadata}, k) when is_integer(k) and k > 0 do
    {:ok, %Tensor{shape: shape} = tensor} = Tensor.coerce(tensor)
    names = class_names(metadata)
    label = fn index -> Enum.at(names, index, index) end

    kind =
      case shape do
        {_} ->
          :one

        {1, _} ->
          :one

        {_, _} ->
          :many

        other ->
          raise ArgumentError, "top_k needs a tensor of rank 1 or 2, got shape #{inspect(other)}"
      end

    ranked =
      for row <- Tensor.top_k(tensor, k) do
        for {i, s} <- row, do: {label.(i), s}
      end

    if kind == :one, do: hd(ranked), else: ranked
  end

  defp class_names(metadata) do
    # Anything but a proper list labels nothing: the indices stand.
    case Map.get(metadata, :class_names) || Map.get(metadata, "class_names") do
      names when is_list(names) -> if List.improper?(names), do: [], else: names
      _ -> []
    end
  end
end
