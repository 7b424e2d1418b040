#!/usr/bin/env bash
# Deploys hub2lake to the Elastic Premium (EP1-EP3) function app of this template.
#
# Why not `azd deploy`: without Azure Files (it needs shared keys, which this
# template keeps off), the Premium app runs from a package URL in the host storage
# account's `app-package` container, fetched with its identity
# (WEBSITE_RUN_FROM_PACKAGE=<url>, WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID).
# The platform refuses zip deploy to such an app (409 "Run-From-Zip is set to a
# remote URL using WEBSITE_RUN_FROM_PACKAGE ... Deployment is not supported in this
# configuration"), so deploying means: package, upload that blob, restart, sync
# triggers. This script checks first that the app really runs from the blob it
# uploads, so the package that ships is the one the app starts.
#
# Needs: az (logged in), cargo; the azd environment's values (it loads them with
# `azd env get-values` when AZURE_RESOURCE_GROUP is not set), or these variables:
#   AZURE_RESOURCE_GROUP, AZURE_FUNCTION_APP_NAME, HOST_STORAGE_ACCOUNT_NAME,
#   DEPLOYMENT_CONTAINER_URL
# The deployer needs Storage Blob Data Contributor on the container (the template
# grants it to AZURE_PRINCIPAL_ID) and may write the site (Contributor).
set -euo pipefail

say() { echo "deploy-premium: $*" >&2; }

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if [ -z "${AZURE_RESOURCE_GROUP:-}" ] && command -v azd >/dev/null 2>&1; then
  eval "$(azd env get-values)"
fi
for name in AZURE_RESOURCE_GROUP AZURE_FUNCTION_APP_NAME HOST_STORAGE_ACCOUNT_NAME DEPLOYMENT_CONTAINER_URL; do
  if [ -z "${!name:-}" ]; then
    say "$name is not set: run from an azd environment (azd env select) or export the deployment outputs"
    exit 1
  fi
done
blob_name=hub2lake-app.zip
package_url="${DEPLOYMENT_CONTAINER_URL%/}/$blob_name"

runs_from="$(az functionapp config appsettings list -g "$AZURE_RESOURCE_GROUP" -n "$AZURE_FUNCTION_APP_NAME" \
  --query "[?name=='WEBSITE_RUN_FROM_PACKAGE'].value | [0]" -o tsv)"
if [ "$runs_from" != "$package_url" ]; then
  say "$AZURE_FUNCTION_APP_NAME has WEBSITE_RUN_FROM_PACKAGE='${runs_from}', not $package_url:"
  say "it is not an Elastic Premium app of this template (Flex Consumption deploys with azd deploy), or azd provision has not run"
  exit 1
fi

say "packaging (scripts/build-handler.sh builds handler for glibc 2.28)"
cargo run --release --locked --bin hub2lake -- package --out dist

say "uploading dist/$blob_name to $package_url"
az storage blob upload --auth-mode login \
  --account-name "$HOST_STORAGE_ACCOUNT_NAME" \
  --container-name app-package \
  --name "$blob_name" \
  --file "dist/$blob_name" \
  --overwrite

say "restarting $AZURE_FUNCTION_APP_NAME and syncing its triggers"
az functionapp restart --resource-group "$AZURE_RESOURCE_GROUP" --name "$AZURE_FUNCTION_APP_NAME"
site_id="$(az functionapp show --resource-group "$AZURE_RESOURCE_GROUP" --name "$AZURE_FUNCTION_APP_NAME" --query id -o tsv)"
az resource invoke-action --action syncfunctiontriggers --ids "$site_id"
say "done"
