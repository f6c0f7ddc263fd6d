"""Tables as files people download: CSV, XLSX (openpyxl) or ODS (odfpy).

One call, ``tables.write_table``, gives every format the same cells, with
formula-like text neutralised. Imports nothing of notifier, so any list (the
agents' call and visit lists today) can be offered in every format.
"""
