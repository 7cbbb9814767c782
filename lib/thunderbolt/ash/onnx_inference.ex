defmodule Thunderbolt.Ash.OnnxInference do
  @moduledoc """
  Declares an Ash resource for `Thunderbolt.OnnxInference` inside your own
  domain, so that AshAi can offer inference as a tool to a language model:

      defmodule MyApp.ML.OnnxInference do
        use Thunderbolt.Ash.OnnxInference, domain: MyApp.ML
      end

      # in MyApp.ML (a domain with `extensions: [AshAi]`):
      tools do
        tool :onnx_infer, MyApp.ML.OnnxInference, :infer
      end

  The `use` expands, in your application and so after Ash is compiled, to:

      use Ash.Resource, domain: MyApp.ML

      actions do
        action :infer, :map do
          description "..."
          argument :model_path, :string, allow_nil?: false
          argument :input, :map, allow_nil?: false
          argument :metadata, :map, default: %{}
          run fn input, context -> Thunderbolt.Ash.OnnxInference.run(input, context) end
        end
      end

      code_interface do
        define :infer, args: [:model_path, :input, {:optional, :metadata}]
      end

  so `MyApp.ML.OnnxInference.infer("cerebros_trained.onnx", %{"data" => ids})`
  works, with `metadata` optional (a `default:` alone does not make a
  positional argument optional). AshAi derives the tool's schema from the
  arguments and passes JSON with string keys, which
  `Thunderbolt.OnnxInference` accepts. The action returns
  `Thunderbolt.OnnxInference.to_map/1` of the result, a JSON-ready map, and
  an error as a sentence from `Thunderbolt.OnnxInference.format_error/1`.

  Thunderbolt does not depend on Ash: nothing here refers to Ash until your
  module is compiled. Model paths are confined to the model directory (see
  `Thunderbolt.ModelDir`).

  ## Options

    * `:domain` — your Ash domain (required).
    * `:infer_opts` — options for `Thunderbolt.OnnxInference.infer/4`, such
      as `top_k: 5` or `model_dir: "/srv/models"` (default `[]`).
  """

  @doc false
  # The options arrive quoted: `domain` as an alias and `infer_opts` as a
  # literal, both unquoted as they are into the expansion.
  defmacro __using__(opts), do: resource_ast(opts)

  @doc """
  The code `use Thunderbolt.Ash.OnnxInference, opts` expands to, as quoted
  Elixir. Raises `ArgumentError` without a `:domain`.
  """
  @spec resource_ast(keyword()) :: Macro.t()
  def resource_ast(opts) do
    domain =
      Keyword.get(opts, :domain) ||
        raise ArgumentError,
              "use Thunderbolt.Ash.OnnxInference needs a domain, e.g. `domain: MyApp.ML`"

    infer_opts = Keyword.get(opts, :infer_opts, [])

    quote do
      use Ash.Resource, domain: unquote(domain)

      actions do
        action :infer, :map do
          description(
            "Run an ONNX model from the model directory on JSON input and return its predictions."
          )

          argument(:model_path, :string, allow_nil?: false)
          argument(:input, :map, allow_nil?: false)
          argument(:metadata, :map, default: %{})

          run(fn input, context ->
            Thunderbolt.Ash.OnnxInference.run(input, context, unquote(infer_opts))
          end)
        end
      end

      code_interface do
        define(:infer, args: [:model_path, :input, {:optional, :metadata}])
      end
    end
  end

  @doc """
  The action's implementation: `Thunderbolt.OnnxInference.infer/4` on the
  input's `arguments`, returning `{:ok, json_ready_map}` or
  `{:error, sentence}`. Takes any map with an `:arguments` map (an
  `Ash.ActionInput` in practice).
  """
  @spec run(%{arguments: map()}, term(), keyword()) :: {:ok, map()} | {:error, String.t()}
  def run(%{arguments: arguments}, _context, infer_opts \\ []) do
    model_path = Map.get(arguments, :model_path)
    input = Map.get(arguments, :input)
    metadata = Map.get(arguments, :metadata) || %{}

    case Thunderbolt.OnnxInference.infer(model_path, input, metadata, infer_opts) do
      {:ok, result} -> {:ok, Thunderbolt.OnnxInference.to_map(result)}
      {:error, reason} -> {:error, Thunderbolt.OnnxInference.format_error(reason)}
    end
  end
end
