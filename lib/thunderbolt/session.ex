defmodule Thunderbolt.Session do
  @moduledoc """
  A loaded ONNX model, ready to run. Create one with `Thunderbolt.load/2`.

  The struct wraps a NIF resource that holds a small pool of ONNX Runtime
  sessions. It is an ordinary immutable value: pass it to other processes
  freely and run it from many at once. The native sessions are freed when
  the last reference to the struct is garbage collected.

  Fields:

    * `inputs` and `outputs` — lists of `%{name: String.t(), type: type, shape: tuple}`
      where `type` is a `t:Thunderbolt.Tensor.type/0` (`nil` for non-tensor
      values) and each dynamic dimension in `shape` is `nil`
    * `metadata` — `%{producer, graph_name, domain, description, version,
      opset, custom}` from the model file; `custom` is a map of strings
    * `providers` — the execution providers in use, best first
    * `warnings` — requested providers that were not available, and why
    * `options` — the load options, after defaults
  """

  @enforce_keys [:resource, :inputs, :outputs]
  defstruct [:resource, :inputs, :outputs, :metadata, :providers, :warnings, :options]

  @type value_info :: %{
          name: String.t(),
          type: Thunderbolt.Tensor.type() | nil,
          shape: tuple()
        }
  @type t :: %__MODULE__{
          resource: reference(),
          inputs: [value_info()],
          outputs: [value_info()],
          metadata: map(),
          providers: [String.t()],
          warnings: [String.t()],
          options: keyword()
        }

  @doc false
  @spec from_native(reference(), map(), keyword()) :: t()
  def from_native(resource, info, options) do
    %__MODULE__{
      resource: resource,
      inputs: Enum.map(info["inputs"], &value_info/1),
      outputs: Enum.map(info["outputs"], &value_info/1),
      metadata: %{
        producer: info["producer"],
        graph_name: info["graph_name"],
        domain: info["domain"],
        description: info["description"],
        version: info["version"],
        opset: info["opset"],
        custom: Map.new(info["custom_metadata"])
      },
      providers: info["providers"],
      warnings: info["warnings"],
      options: options
    }
  end

  defp value_info({name, type, shape}) do
    type =
      case type && Thunderbolt.Tensor.type(type) do
        {:ok, type} -> type
        _ -> nil
      end

    %{name: name, type: type, shape: List.to_tuple(shape)}
  end

  defimpl Inspect do
    def inspect(session, _opts) do
      sig = fn values ->
        Enum.map_join(values, ", ", fn %{name: name, type: type, shape: shape} ->
          dims = shape |> Tuple.to_list() |> Enum.map_join(",", &(&1 || "?"))
          type = if type, do: Thunderbolt.Tensor.type_string(type), else: "?"
          "#{name}: #{type}[#{dims}]"
        end)
      end

      "#Thunderbolt.Session<(#{sig.(session.inputs)}) -> (#{sig.(session.outputs)})>"
    end
  end
end
