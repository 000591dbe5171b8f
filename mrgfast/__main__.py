from mrgfast.cli.main import main

raise SystemExit(main())
