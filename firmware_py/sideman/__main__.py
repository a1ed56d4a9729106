from sideman.cli import main

raise SystemExit(main())
