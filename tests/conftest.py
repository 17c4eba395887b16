"""The quick loop: `python -m pytest -q -m "not slow"` keeps the tests listed here (fast,
in-process checks of every error family, one reference parity per backend, one test per
CLI verb) and marks every other test `slow`. CI runs the whole suite."""

from __future__ import annotations

import fnmatch

import pytest

# file -> test-name patterns kept in the quick loop ("*": the whole file)
QUICK = {
    "test_quick.py": ["*"],                     # parity per backend, each CLI verb
    "test_spec_docs.py": ["*"],                 # the language reference stays true
    "test_diagnostics.py": ["*"],               # located spec errors
    "test_cli_messages.py": ["test_parameter_*", "test_yaml_indentation_*", "test_error_in_an_anchor_*",
                             "test_residual_width_*", "test_debug_is_accepted_anywhere*"],
    "test_hostile.py": ["test_hostile_spec*"],  # hostile YAML, in-process
    "test_construct_errors.py": ["test_adaptive_*", "test_shortcut_*", "test_unknown_*",
                                 "test_when_*"],
    "test_build_hostile.py": ["test_bad_checkpoint*py*", "test_usage_error*", "test_argparse_errors*"],
    "test_cli_output.py": ["test_symlinked_output_*", "test_stale_temp_files_*"],
    "test_ops.py": ["test_expression_forms*", "test_residual_identity*"],
    "test_specs_inventory.py": ["test_inventory_numbers*", "test_committed_schema_*"],
    "test_optimize.py": ["test_fold_bn_*"],
    "test_torch_module.py": ["test_print_*", "test_input_check_messages"],
    "test_artifacts.py": ["test_generated_source_reads_cleanly", "test_num_classes_constant_*"],
    "test_lineage.py": ["test_params_and_layers*", "test_googlenet_batchnorm_*"],
    # the views (issue 12): one test per verb, plus the variant language and its errors
    "test_show.py": ["test_show_lists_*", "test_expand_of_an_edited_variant"],
    "test_views_summary_diff.py": ["test_summary_rows_form_*", "test_diff_half_width_*",
                                   "test_diff_exit_codes_*"],
    "test_graph.py": ["test_cli_formats_from_the_extension", "test_inception_v4_dot_*"],
    "test_variants.py": ["*"],
    "test_sizes.py": ["*"],                     # the size search's run-length vectors
}


def _quick(item) -> bool:
    patterns = QUICK.get(item.path.name, [])
    return any(fnmatch.fnmatchcase(item.name, p) for p in patterns)


def pytest_collection_modifyitems(config, items):
    slow = pytest.mark.slow
    for item in items:
        if not _quick(item):
            item.add_marker(slow)
