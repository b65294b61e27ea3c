from audience.cli import main

raise SystemExit(main())
