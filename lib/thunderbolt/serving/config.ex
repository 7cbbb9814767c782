defmodule Thunderbolt.Serving.Config do
  @moduledoc """
  The validated options of a `Thunderbolt.Serving`.

  `new/1` turns the keyword list given to `Thunderbolt.Serving.start_link/1`
  into this struct, or into a `Thunderbolt.Error` of kind `:invalid_option`
  that names the option and what it should be.

      iex> {:ok, config} = Thunderbolt.Serving.Config.new(name: MyModel, model: "model.onnx")
      iex> {config.batch_size, config.batch_timeout, config.max_queue}
      {32, 200, 1024}

      iex> {:error, error} = Thunderbolt.Serving.Config.new(name: MyModel, model: "m.onnx", batch_size: 0)
      iex> error.message
      ":batch_size must be a positive integer, got: 0"
  """

  alias Thunderbolt.{Error, Session}

  # Upper bounds of the numeric options.
  @most [batch_size: 1_000_000, batch_timeout: 60_000_000, runners: 1024, max_queue: 10_000_000]

  @enforce_keys [:name, :model]
  defstruct [
    :name,
    :model,
    batch_size: 32,
    batch_timeout: 200,
    runners: 1,
    max_queue: 1024,
    load_options: [],
    scheduler: :auto,
    distributed: true
  ]

  @type t :: %__MODULE__{
          name: term(),
          model: Thunderbolt.source() | Session.t(),
          batch_size: pos_integer(),
          batch_timeout: non_neg_integer(),
          runners: pos_integer(),
          max_queue: pos_integer(),
          load_options: keyword(),
          scheduler: :auto | :normal | :dirty,
          distributed: boolean()
        }

  @keys [
    :name,
    :model,
    :batch_size,
    :batch_timeout,
    :runners,
    :max_queue,
    :load_options,
    :scheduler,
    :distributed
  ]

  @doc """
  Validates serving options. See `Thunderbolt.Serving.start_link/1` for the
  list. `:runners` defaults to `System.schedulers_online()`.
  """
  @spec new(keyword()) :: {:ok, t()} | {:error, Error.t()}
  def new(opts) when is_list(opts) do
    if Keyword.keyword?(opts) do
      case Enum.reject(Keyword.keys(opts), &(&1 in @keys)) do
        [] -> opts |> Keyword.put_new(:runners, System.schedulers_online()) |> check()
        unknown -> error("unknown options #{inspect(unknown)}; known: #{inspect(@keys)}")
      end
    else
      error("options must be a keyword list, got: #{inspect(opts, limit: 5)}")
    end
  end

  def new(other), do: error("options must be a keyword list, got: #{inspect(other, limit: 5)}")

  defp check(opts) do
    with :ok <- required(opts, :name),
         :ok <- required(opts, :model),
         :ok <- model(opts[:model]),
         :ok <- positive(opts, :batch_size),
         :ok <- non_negative(opts, :batch_timeout),
         :ok <- positive(opts, :runners),
         :ok <- positive(opts, :max_queue),
         :ok <- at_most(opts, @most),
         :ok <- load_options(opts[:load_options]),
         :ok <- member(opts, :scheduler, [:auto, :normal, :dirty]),
         :ok <- member(opts, :distributed, [true, false]) do
      {:ok, struct!(__MODULE__, opts)}
    end
  end

  defp required(opts, key) do
    if Keyword.has_key?(opts, key), do: :ok, else: error("#{inspect(key)} is required")
  end

  defp model(path) when is_binary(path), do: :ok
  defp model({:binary, bytes}) when is_binary(bytes), do: :ok
  defp model(%Session{}), do: :ok

  defp model(other) do
    error(
      ":model must be a path, {:binary, bytes} or a Thunderbolt.Session, got: " <>
        inspect(other, limit: 5)
    )
  end

  defp positive(opts, key) do
    case Keyword.fetch(opts, key) do
      :error -> :ok
      {:ok, n} when is_integer(n) and n > 0 -> :ok
      {:ok, n} -> error("#{inspect(key)} must be a positive integer, got: #{inspect(n)}")
    end
  end

  # Each runner loads its own session, and the native queue keeps its sizes
  # in machine words: a count in the millions would exhaust the machine,
  # and a bignum could not be passed at all.
  defp at_most(opts, [{key, most} | rest]) do
    case Keyword.fetch(opts, key) do
      {:ok, n} when n > most -> error("#{inspect(key)} must be at most #{most}, got: #{n}")
      _ -> at_most(opts, rest)
    end
  end

  defp at_most(_opts, []), do: :ok

  defp non_negative(opts, key) do
    case Keyword.fetch(opts, key) do
      :error -> :ok
      {:ok, n} when is_integer(n) and n >= 0 -> :ok
      {:ok, n} -> error("#{inspect(key)} must be a non-negative integer, got: #{inspect(n)}")
    end
  end

  defp member(opts, key, allowed) do
    case Keyword.fetch(opts, key) do
      :error ->
        :ok

      {:ok, value} ->
        if value in allowed,
          do: :ok,
          else:
            error("#{inspect(key)} must be one of #{inspect(allowed)}, got: #{inspect(value)}")
    end
  end

  defp load_options(nil), do: :ok

  defp load_options(opts) when is_list(opts) do
    cond do
      not Keyword.keyword?(opts) ->
        error(":load_options must be a keyword list, got: #{inspect(opts, limit: 5)}")

      Keyword.has_key?(opts, :pool_size) ->
        error(":load_options cannot set :pool_size: each runner owns a session of pool size 1")

      true ->
        :ok
    end
  end

  defp load_options(other),
    do: error(":load_options must be a keyword list, got: #{inspect(other, limit: 5)}")

  defp error(message), do: {:error, Error.new(:invalid_option, message)}
end
