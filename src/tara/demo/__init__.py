"""``tara demo``: the whole loop on a laptop — sandbox, gateway, controller, simulated students.

See :mod:`tara.demo.runner` for what runs, :mod:`tara.demo.scenario` for
the scenarios and their pace, and :mod:`tara.demo.command` for the CLI.
"""
