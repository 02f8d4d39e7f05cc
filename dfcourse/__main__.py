from dfcourse.cli import main

raise SystemExit(main())
