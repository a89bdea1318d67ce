//! [`UserStore`] on every SQL dialect. Reads go to the read connections; on SQLite the lookup
//! by address, which every code request makes, is batched ([`Dialect::lookup_email`]).
use async_trait::async_trait;

use super::SqlStore;
use crate::domain::{Email, Username};
use crate::store::sql::{users, Dialect, Duplicate, SqlRow, Val};
use crate::store::{first_by_key, CreateUserError, NewUser, StoreResult, User, UserStore};

#[async_trait]
impl<D: Dialect> UserStore for SqlStore<D> {
    async fn create_user(&self, u: &NewUser) -> Result<i64, CreateUserError> {
        let public_id = u.public_id.to_text();
        let args = [
            Val::Text(&public_id),
            Val::Name(&u.username),
            Val::Key(&u.username_key),
            Val::Int(Username::KEY_VERSION),
            Val::Text(&u.email),
            Val::Text(&u.password_hash),
            Val::Int(u.created_at),
        ];
        let args = &args;
        let res = self
            .run(|| async move {
                let mut conn = D::write(&self.pools).await?;
                match D::insert_id(&mut conn, D::SQL.users.create, args).await {
                    Ok(id) => Ok(Ok(id)),
                    Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                        Ok(Err(D::duplicate(&*db)))
                    }
                    Err(e) => Err(e),
                }
            })
            .await?;
        match res {
            Ok(id) => Ok(id),
            Err(Duplicate::Email) => Err(CreateUserError::EmailTaken),
            Err(Duplicate::Username) => Err(CreateUserError::UsernameTaken),
            Err(Duplicate::Unnamed) => match self.by_email(u.email.as_str()).await? {
                Some(_) => Err(CreateUserError::EmailTaken),
                None => Err(CreateUserError::UsernameTaken),
            },
        }
    }

    async fn delete_user(&self, id: i64) -> StoreResult<()> {
        self.write(D::SQL.users.delete, &[Val::Int(id)])
            .await
            .map(drop)
    }

    async fn find_by_id(&self, id: i64) -> StoreResult<Option<User>> {
        self.read_one(D::SQL.users.by_id, &[Val::Int(id)], users::from_row)
            .await
    }

    async fn find_by_username(&self, keys: &[String]) -> StoreResult<Option<User>> {
        if keys.is_empty() {
            return Ok(None);
        }
        // One lookup for every key.
        let list: Vec<Val> = keys.iter().map(|k| Val::Key(k)).collect();
        let list = &list;
        let found = self
            .run(|| async move {
                let mut conn = D::read(&self.pools).await?;
                let rows = D::fetch_list(&mut conn, D::SQL.users.by_keys, &[], list).await?;
                rows.iter()
                    .map(|r| Ok((r.key_text("username_key")?, users::from_row(r)?)))
                    .collect::<Result<Vec<_>, sqlx::Error>>()
            })
            .await?;
        Ok(first_by_key(keys, found))
    }

    async fn find_by_email(&self, email: &Email) -> StoreResult<Option<User>> {
        match D::lookup_email(&self.pools, email.as_str()) {
            Some(batched) => batched.await,
            None => self.by_email(email.as_str()).await,
        }
    }

    async fn set_password(&self, id: i64, hash: &str) -> StoreResult<()> {
        let args = [Val::Text(hash), Val::Int(id)];
        self.write(D::SQL.users.set_password, &args).await.map(drop)
    }

    async fn set_disabled(&self, id: i64, disabled: bool) -> StoreResult<()> {
        let args = [Val::Flag(disabled), Val::Int(id)];
        self.write(D::SQL.users.set_disabled, &args).await.map(drop)
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        self.read_all(D::SQL.users.all, &[], users::from_row).await
    }
}

impl<D: Dialect> SqlStore<D> {
    /// The account with this address, by one statement.
    async fn by_email(&self, email: &str) -> StoreResult<Option<User>> {
        self.read_one(D::SQL.users.by_email, &[Val::Text(email)], |r| {
            users::from_row(r)
        })
        .await
    }
}
