from gocopt.cli import main

raise SystemExit(main())
