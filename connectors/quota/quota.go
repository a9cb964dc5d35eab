// Package quota counts uses of named daily budgets (USSD codes of a line,
// RCS messages of the bridge) in the database, so that a restart does not
// reset a day's count. It imports no other bubbled package; the bridge
// decides what is counted and under which name.
package quota

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.mau.fi/util/dbutil"
)

// versionTable tracks the schema of bubbled_quota apart from other tables.
const versionTable = "bubbled_quota_version"

// keepDays is how long old days' counts stay (for the operator to look at).
const keepDays = 40

var upgradeTable = dbutil.BuildUpgradeTable().
	WithRaw(0, 1, 0, "create the daily quota table", dbutil.TxnModeOn, func(ctx context.Context, db *dbutil.Database) error {
		_, err := db.Exec(ctx, `CREATE TABLE bubbled_quota (
			name TEXT    NOT NULL,
			day  TEXT    NOT NULL,
			used INTEGER NOT NULL,
			PRIMARY KEY (name, day)
		)`)
		return err
	}).
	Finish()

// Upgrade creates or updates the table bubbled_quota in db. It is safe to
// call on every start.
func Upgrade(ctx context.Context, db *dbutil.Database) error {
	if err := db.Child(versionTable, upgradeTable, nil).Upgrade(ctx); err != nil {
		return fmt.Errorf("upgrade quota table: %w", err)
	}
	return nil
}

// ErrExceeded is wrapped by the *ExceededError of Take.
var ErrExceeded = errors.New("daily limit reached")

// ExceededError says which budget is used up and when it is refilled.
type ExceededError struct {
	// Name is the budget's name as given to Take.
	Name string
	// Limit is the daily limit that was reached.
	Limit int
	// Reset is the start of the next calendar day, when the budget refills.
	Reset time.Time
}

func (e *ExceededError) Error() string {
	return fmt.Sprintf("the limit of %d per day is reached (%s); it resets at %s", e.Limit, e.Name, e.Reset.Format("15:04"))
}

// Unwrap makes errors.Is(err, ErrExceeded) true.
func (e *ExceededError) Unwrap() error { return ErrExceeded }

// Options adjusts New. The zero value counts calendar days in time.Local
// by the system clock.
type Options struct {
	// Location is the time zone of the calendar day; default time.Local.
	Location *time.Location
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Counter counts uses per name per calendar day. It is safe for concurrent
// use within one process (a mutex orders check and increment) and runs no
// goroutine.
type Counter struct {
	db  *dbutil.Database
	loc *time.Location
	now func() time.Time
	mu  sync.Mutex
}

// New makes a Counter on db, whose table Upgrade created. It does no I/O.
func New(db *dbutil.Database, opts Options) *Counter {
	c := &Counter{db: db, loc: opts.Location, now: opts.Now}
	if c.loc == nil {
		c.loc = time.Local
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c
}

// today returns the day key and the start of the next day.
func (c *Counter) today() (string, time.Time) {
	t := c.now().In(c.loc)
	start := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, c.loc)
	return start.Format(time.DateOnly), start.AddDate(0, 0, 1)
}

// Take counts one use of name today, unless limit uses were counted
// already: then it counts nothing and returns an *ExceededError. A limit
// of 0 or less means no limit (the use is still counted).
func (c *Counter) Take(ctx context.Context, name string, limit int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	day, reset := c.today()
	used, err := c.used(ctx, name, day)
	if err != nil {
		return err
	}
	if limit > 0 && used >= limit {
		return &ExceededError{Name: name, Limit: limit, Reset: reset}
	}
	_, err = c.db.Exec(ctx, `INSERT INTO bubbled_quota (name, day, used) VALUES ($1, $2, 1)
		ON CONFLICT (name, day) DO UPDATE SET used = bubbled_quota.used + 1`, name, day)
	if err != nil {
		return fmt.Errorf("count a use of %s: %w", name, err)
	}
	if used == 0 {
		cutoff := c.now().In(c.loc).AddDate(0, 0, -keepDays).Format(time.DateOnly)
		if _, err := c.db.Exec(ctx, `DELETE FROM bubbled_quota WHERE name=$1 AND day < $2`, name, cutoff); err != nil {
			return fmt.Errorf("prune old counts of %s: %w", name, err)
		}
	}
	return nil
}

// Return gives back one use of name counted today by Take, for a use that
// did not happen after all (the send failed).
func (c *Counter) Return(ctx context.Context, name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	day, _ := c.today()
	_, err := c.db.Exec(ctx, `UPDATE bubbled_quota SET used = used - 1 WHERE name=$1 AND day=$2 AND used > 0`, name, day)
	if err != nil {
		return fmt.Errorf("give back a use of %s: %w", name, err)
	}
	return nil
}

// Used returns the uses of name counted today.
func (c *Counter) Used(ctx context.Context, name string) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	day, _ := c.today()
	return c.used(ctx, name, day)
}

func (c *Counter) used(ctx context.Context, name, day string) (int, error) {
	var n int
	err := c.db.QueryRow(ctx, `SELECT used FROM bubbled_quota WHERE name=$1 AND day=$2`, name, day).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read the count of %s: %w", name, err)
	}
	return n, nil
}
