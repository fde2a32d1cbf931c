"""Running a profile (a matrix of datasets x models x strategies x seeds) through the notebooks:
``medtl run PROFILE``. Each module has one job and imports only the ones above it in this list
(and, below the package, config, data, search_cut, train_run, evaluation; nothing below imports
this package):

- :mod:`.reports`: the report notebooks a profile declares (``reports:`` / ``paper:``) and what
  each needs;
- :mod:`.profile`: a profile's YAML read and checked, and its matrix of runs (the format);
- :mod:`.plan`: the notebook executions a profile needs, in order;
- :mod:`.notebooks`: papermill execution in kernels of their own, and the HTML exports;
- :mod:`.launchers`: where the plan executes (inline, local, slurm, submitit-local), and the
  notebook-free ``direct`` launcher;
- :mod:`.run`: :func:`run_profile` and ``medtl run`` (:func:`main`).

Stand-ins (offline data) are written by :mod:`medtl_lib.data.standin`.
"""
from ..data.standin import ensure_standin, prepare_synthetic
from .launchers import (
                        LAUNCHERS,
                        GroupJob,
                        Outcome,
                        Task,
                        launch,
                        run_direct,
                        run_group,
                        run_steps,
                        split_plan,
                        visible_gpus,
)
from .notebooks import (
                        KERNEL,
                        execute,
                        export_html_report,
                        export_step_html,
                        kernel_manager,
                        short_error,
)
from .plan import Step, complete, plan
from .profile import (
                        DEFAULT_SEED,
                        DEFAULT_STRATEGY,
                        NOTEBOOKS,
                        PROFILES,
                        REPO,
                        Profile,
                        Search,
                        load_profile,
                        merge_fields,
                        override_keys,
                        run_name,
                        uses_legacy_names,
)
from .reports import (
                        EVERY_PLAN,
                        REPORTS,
                        RESULTS_PAGE,
                        Report,
                        paper_reports,
                        report_name,
                        report_names,
)
from .run import main, run_profile

__all__ = ["DEFAULT_SEED", "DEFAULT_STRATEGY", "EVERY_PLAN", "GroupJob", "KERNEL", "LAUNCHERS",
           "NOTEBOOKS", "Outcome", "PROFILES", "Profile", "REPO", "REPORTS", "Report",
           "RESULTS_PAGE", "Search", "Step", "Task", "complete", "ensure_standin", "execute",
           "export_html_report", "export_step_html", "kernel_manager", "launch", "load_profile",
           "main", "merge_fields", "override_keys", "plan", "prepare_synthetic",
           "paper_reports", "report_name", "report_names",
           "run_direct", "run_group", "run_name", "run_profile", "run_steps", "short_error",
           "split_plan", "uses_legacy_names", "visible_gpus"]
