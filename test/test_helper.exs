shared_models = Thunderbolt.TestModels.dir()

exclude =
  if File.dir?(shared_models) do
    [:slow]
  else
    IO.puts(
      "\n*** #{shared_models} is absent: tests tagged :shared_models are skipped " <>
        "(they need the reference models that sit beside the repo in ../shared/models).\n"
    )

    [:slow, :shared_models]
  end

ExUnit.start(exclude: exclude)
