"""The project model: facts that cross files (issue 12).

One file's analysis sees one file. Training code is spread over several: a save helper in `utils.py`
guarded only in `train.py`, a main-process predicate or decorator in a `dist_utils` module. So each
Python file of the project gets a small summary (`summary`, on `ast`, cached by content in `store`),
the summaries are linked through the project's own imports (`modules`, `link`), and the analysis of
a file is handed a `ProjectView` (`view`): what the rest of the project says about the names it
imports and about who calls its functions. `build` puts the pieces together for the CLI.
"""
