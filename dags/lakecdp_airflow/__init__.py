"""Helpers of the lakecdp DAG files (dags/lakecdp_*.py); listed in dags/.airflowignore, never parsed as DAGs.

Airflow puts the DAG bundle root (this dags/ folder) on sys.path, so DAG files import
`lakecdp_airflow.common` (constants, assets, the gate) and, inside tasks only, the nightly flow
(`lakecdp.flows.nightly`), which does the work.
"""
