defmodule Thunderbolt.Error do
  @moduledoc """
  The error every Thunderbolt function returns as `{:error, %Thunderbolt.Error{}}`.

  `kind` says what went wrong, for code that wants to react:

    * `:library` — ONNX Runtime could not be loaded (run `./scripts/setup.sh`)
    * `:load` — the model file or binary could not be read or parsed
    * `:invalid_input` — wrong dtype, shape, size, input name or count
    * `:invalid_option` — an option that is unknown or has a bad value
    * `:onnxruntime` — ONNX Runtime refused the run (for example an
      out-of-range Gather index)
    * `:unsupported` — a feature Thunderbolt does not offer, such as string
      tensors
    * `:build` — the ONNX builder or Keras importer refused a model

  `message` is written for a person and says what to fix.

      iex> %Thunderbolt.Error{kind: :load, message: "model.onnx is empty"} |> Exception.message()
      "model.onnx is empty"
  """

  defexception [:kind, :message]

  @type kind ::
          :library
          | :load
          | :invalid_input
          | :invalid_option
          | :onnxruntime
          | :unsupported
          | :build
  @type t :: %__MODULE__{kind: kind(), message: String.t()}

  @doc false
  @spec new(kind(), String.t()) :: t()
  def new(kind, message), do: %__MODULE__{kind: kind, message: message}

  @doc false
  # A NIF's answer as the API gives it: NIFs report errors as
  # `{:error, {kind, message}}`.
  @spec from_native({:ok, value} | {:error, {kind(), String.t()}}) ::
          {:ok, value} | {:error, t()}
        when value: term()
  def from_native({:ok, _value} = ok), do: ok
  def from_native({:error, {kind, message}}), do: {:error, new(kind, message)}

  @doc false
  # The one helper bang functions raise through.
  @spec unwrap!({:ok, value} | {:error, t()}) :: value when value: term()
  def unwrap!({:ok, value}), do: value
  def unwrap!({:error, %__MODULE__{} = error}), do: raise(error)
end
