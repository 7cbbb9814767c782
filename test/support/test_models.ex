defmodule Thunderbolt.TestModels do
  @moduledoc false
  # Where tests find models: the reference models in ../shared/models (never
  # copied into the repo) and the small fixtures committed under test/fixtures.
  # Also the few helpers many test files share.

  @spec dir() :: String.t()
  def dir do
    System.get_env("THUNDERBOLT_SHARED_MODELS") ||
      Path.expand("../../../shared/models", __DIR__)
  end

  @spec shared(String.t()) :: String.t()
  def shared(name), do: Path.join(dir(), name)

  @spec fixture(String.t()) :: String.t()
  def fixture(relative), do: Path.expand("../fixtures/#{relative}", __DIR__)

  @spec python() :: String.t() | nil
  def python do
    path = Path.expand("../../.venv/bin/python", __DIR__)
    if File.exists?(path), do: path
  end

  @doc "Reads a fixture written by a scripts/gen_*_fixtures.py script as JSON with :jiffy."
  @spec json!(String.t()) :: term()
  def json!(relative), do: relative |> fixture() |> File.read!() |> :jiffy.decode([:return_maps])

  @doc "Polls `fun` until it returns true, `tries` times `interval_ms` apart, then fails the test."
  @spec wait_until((() -> boolean()), non_neg_integer(), pos_integer()) :: :ok
  def wait_until(fun, tries \\ 2_500, interval_ms \\ 2) do
    cond do
      fun.() ->
        :ok

      tries == 0 ->
        ExUnit.Assertions.flunk("condition not reached")

      true ->
        Process.sleep(interval_ms)
        wait_until(fun, tries - 1, interval_ms)
    end
  end

  @doc """
  Random nested data for robustness tests, from the caller's `:rand` state:
  nested lists, improper lists, runs of one leaf, `leaves`, and the values
  in `extra` (well-formed pieces, so that some of it gets further).
  """
  def random_nested(leaves, extra \\ [], depth \\ 0) do
    case :rand.uniform(6) do
      1 when depth < 40 ->
        for _ <- 1..:rand.uniform(4), do: random_nested(leaves, extra, depth + 1)

      2 when depth < 40 ->
        [random_nested(leaves, extra, depth + 1) | Enum.random(leaves)]

      3 ->
        List.duplicate(Enum.random(leaves), :rand.uniform(9))

      4 when extra != [] ->
        Enum.random(extra)

      _ ->
        Enum.random(leaves)
    end
  end

  @doc """
  Asserts two flat float lists agree within rtol/atol, with a useful message. NaN and
  the infinities (`:nan`, `:infinity`, `:neg_infinity` in `Thunderbolt.Tensor.to_flat_list/1`)
  must stand where and only where they are expected.
  """
  defmacro assert_close(actual, expected, opts \\ []) do
    quote bind_quoted: [actual: actual, expected: expected, opts: opts] do
      rtol = Keyword.get(opts, :rtol, 1.0e-5)
      atol = Keyword.get(opts, :atol, 1.0e-6)

      ExUnit.Assertions.assert(
        length(actual) == length(expected),
        "length #{length(actual)} != #{length(expected)}"
      )

      bad =
        actual
        |> Enum.zip(expected)
        |> Enum.with_index()
        |> Enum.find(fn
          {{a, e}, _} when is_number(a) and is_number(e) -> abs(a - e) > atol + rtol * abs(e)
          {{a, e}, _} -> a != e
        end)

      ExUnit.Assertions.assert(bad == nil, "values differ: #{inspect(bad)}")
    end
  end
end
