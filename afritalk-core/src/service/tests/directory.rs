//! Directory search: the caller left out, the matrix per entry, the cursor.

use std::sync::{Arc, Mutex};

use afritalk_ports::*;
use chrono::TimeDelta;

use super::*;
use crate::service::DirectorySearch;

fn people() -> Vec<DirectoryUser> {
    vec![
        dir_user("dg", Role::Dg, true),
        dir_user("emp", Role::Employe, true),
        dir_user("emp2", Role::Employe, true),
        dir_user("off", Role::Dg, false),
        dir_user("pdg", Role::Pdg, true),
    ]
}

fn search(after: Option<DirectoryCursor>, limit: u32) -> DirectorySearch {
    DirectorySearch {
        text: None,
        after,
        include_inactive: true,
        limit: PageSize::new(limit).unwrap(),
    }
}

/// A harness whose presence adapter has seen `dg` (connected, active a
/// moment ago) and `emp2` (gone two hours ago), and nobody else.
fn seen_some(users: Vec<DirectoryUser>) -> Harness {
    let mut h = Harness::new(users);
    h.presence.expect_records().returning(|t, ids| {
        assert_eq!(t, &tenant());
        let record = |id: &str, connections, ago| PresenceRecord {
            user_id: uid(id),
            connections,
            last_seen: now() - ago,
        };
        let known = [
            record("dg", 1, TimeDelta::seconds(5)),
            record("emp2", 0, TimeDelta::hours(2)),
        ];
        Ok(known
            .into_iter()
            .filter(|r| ids.contains(&r.user_id))
            .collect())
    });
    h
}

/// A harness whose directory search returns `page` and records the queries.
fn answering(page: Vec<DirectoryUser>) -> (Harness, Arc<Mutex<Vec<DirectoryQuery>>>) {
    let mut h = seen_some(people());
    let queries = Arc::new(Mutex::new(Vec::new()));
    let seen = queries.clone();
    h.directory.expect_search().returning(move |t, q| {
        assert_eq!(t, &tenant());
        seen.lock().unwrap().push(q.clone());
        Ok(page.clone())
    });
    (h, queries)
}

fn flags(page: &crate::views::DirectoryPage) -> Vec<(&str, bool)> {
    page.users
        .iter()
        .map(|e| (e.user_id.as_str(), e.can_start_conversation))
        .collect()
}

#[test]
fn each_entry_says_whether_the_matrix_lets_the_caller_start_and_the_caller_is_left_out() {
    let (h, _) = answering(people());
    let f = h.build();
    let page = run(f
        .service
        .search_directory(&staff("emp", Role::Employe), search(None, 50)))
    .unwrap();
    assert_eq!(
        flags(&page),
        [("dg", true), ("emp2", true), ("off", false), ("pdg", false)]
    );
    assert_eq!(page.next_cursor, None);
    // Presence of the page, read in one call: never seen is offline.
    let status = |id: &str| {
        let e = page
            .users
            .iter()
            .find(|e| e.user_id.as_str() == id)
            .unwrap();
        (e.status, e.last_seen)
    };
    assert_eq!(
        status("dg"),
        (
            Some(PresenceStatus::Online),
            Some(now() - TimeDelta::seconds(5))
        )
    );
    assert_eq!(
        status("emp2"),
        (
            Some(PresenceStatus::Offline),
            Some(now() - TimeDelta::hours(2))
        )
    );
    assert_eq!(status("pdg"), (Some(PresenceStatus::Offline), None));

    let page = run(f
        .service
        .search_directory(&staff("pdg", Role::Pdg), search(None, 50)))
    .unwrap();
    assert_eq!(
        flags(&page),
        [("dg", true), ("emp", true), ("emp2", true), ("off", false)]
    );
    let service = Actor::service(tenant(), uid("hr-sync"));
    let page = run(f.service.search_directory(&service, search(None, 50))).unwrap();
    assert_eq!(page.users.len(), 5);
    assert!(page.users.iter().all(|e| !e.can_start_conversation));
    // A read: nothing audited, nothing pushed.
    assert!(f.actions().is_empty());
    assert!(f.deliveries().is_empty());
}

#[test]
fn a_full_page_gives_its_last_row_s_position_even_when_that_row_is_the_caller() {
    let page_rows = vec![
        dir_user("dg", Role::Dg, true),
        dir_user("emp", Role::Employe, true),
    ];
    let (h, queries) = answering(page_rows);
    let f = h.build();
    let after = DirectoryCursor {
        key: NameKey::from_cursor("user ceo".into()),
        user_id: uid("ceo"),
    };
    let page = run(f
        .service
        .search_directory(&staff("emp", Role::Employe), search(Some(after.clone()), 2)))
    .unwrap();
    assert_eq!(flags(&page), [("dg", true)]);
    let next = page.next_cursor.unwrap();
    assert_eq!(
        (next.key.as_str(), next.user_id.as_str()),
        ("user emp", "emp")
    );
    let asked = queries.lock().unwrap()[0].clone();
    assert_eq!(asked.after, Some(after));
    assert!(asked.include_inactive);

    let (h, _) = answering(vec![dir_user("dg", Role::Dg, true)]);
    let page = run(h
        .build()
        .service
        .search_directory(&staff("emp", Role::Employe), search(None, 2)))
    .unwrap();
    assert_eq!(page.next_cursor, None, "a short page is the last");
}

#[test]
fn a_deactivated_caller_finds_no_one_and_each_try_is_on_the_trail() {
    let mut everyone = people();
    everyone.push(dir_user("left", Role::Pdg, false));
    // No search expectation: reaching the directory's search would panic.
    let f = Harness::new(everyone).build();
    let left = staff("left", Role::Pdg);
    for err in [
        run(f.service.search_directory(&left, search(None, 50))).unwrap_err(),
        run(f.service.directory_entry(&left, &uid("dg"))).unwrap_err(),
    ] {
        assert_eq!(
            err,
            MessagingError::Forbidden("your account is deactivated".into())
        );
    }
    assert_eq!(
        f.audited_operations(),
        vec![
            (AuditAction::ForbiddenAttempt, "directory.search".into()),
            (AuditAction::ForbiddenAttempt, "directory.entry".into()),
        ]
    );
}

#[test]
fn deactivated_users_are_found_among_many_in_reads_of_at_most_500() {
    let mut everyone: Vec<DirectoryUser> = (0..1_200)
        .map(|n| dir_user(&format!("u{n}"), Role::Employe, n % 400 != 7))
        .collect();
    everyone.push(dir_user("off", Role::Dg, false));
    let mut h = Harness::new(vec![]);
    // Only list reads: the single-user cache may be older than a
    // deactivation made on another node.
    h.directory.checkpoint();
    let reads = Arc::new(Mutex::new(Vec::new()));
    let seen = reads.clone();
    h.directory.expect_users().returning(move |t, ids| {
        seen.lock().unwrap().push(ids.len());
        Ok(everyone
            .iter()
            .filter(|u| &u.tenant_id == t && ids.contains(&u.user_id))
            .cloned()
            .collect())
    });
    let f = h.build();
    let mut asked: Vec<UserId> = (0..1_200).map(|n| uid(&format!("u{n}"))).collect();
    asked.extend([uid("ghost"), uid("off")]);
    let mut found = run(f.service.deactivated_among(&tenant(), &asked)).unwrap();
    found.sort();
    let mut expected = vec![uid("off"), uid("u7"), uid("u407"), uid("u807")];
    expected.sort();
    assert_eq!(found, expected);
    assert_eq!(*reads.lock().unwrap(), vec![500, 500, 202]);
    assert!(f.actions().is_empty(), "a system check writes no audit row");
}

#[test]
fn one_entry_by_id_follows_the_same_rules_and_unknown_ids_are_not_found() {
    let f = seen_some(people()).build();
    let emp = staff("emp", Role::Employe);
    let shown = |id: &str| run(f.service.directory_entry(&emp, &uid(id)));
    assert!(shown("dg").unwrap().can_start_conversation);
    assert!(!shown("pdg").unwrap().can_start_conversation);
    assert!(!shown("off").unwrap().can_start_conversation);
    let me = shown("emp").unwrap();
    assert_eq!((me.active, me.can_start_conversation), (true, false));
    assert_eq!(
        shown("ghost").unwrap_err(),
        MessagingError::NotFound(Missing::User)
    );
}

#[test]
fn presence_is_unknown_when_unreachable_or_while_messaging_is_off_and_the_directory_answers() {
    let emp = staff("emp", Role::Employe);
    let mut down = Harness::new(people());
    down.presence
        .expect_records()
        .returning(|_, _| Err(StoreError::Unavailable("redis down".into())));
    down.directory
        .expect_search()
        .returning(|_, _| Ok(people()));
    let page = run(down
        .build()
        .service
        .search_directory(&emp, search(None, 50)))
    .unwrap();
    assert_eq!(page.users.len(), 4);
    assert!(
        page.users
            .iter()
            .all(|e| e.status.is_none() && e.last_seen.is_none())
    );
    assert!(page.users.iter().any(|e| e.can_start_conversation));

    // Switched off: presence is not even read (the mock would panic).
    let mut off = Harness::new(people());
    off.features.checkpoint();
    off.features
        .expect_messaging_enabled()
        .returning(|_| Ok(false));
    let shown = run(off.build().service.directory_entry(&emp, &uid("dg"))).unwrap();
    assert_eq!((shown.status, shown.can_start_conversation), (None, true));
}
