from distill_lib.cli import main

raise SystemExit(main())
