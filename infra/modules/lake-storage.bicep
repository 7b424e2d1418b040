// The lake: an ADLS Gen2 account (StorageV2 with hierarchical namespace) and one
// container. hub2lake writes through the Blob API (object_store), which ADLS Gen2
// accounts serve as well; the hierarchical namespace is for the readers (Spark,
// Synapse, Databricks, ADX, Snowflake external stages over abfss://).
//
// Data protection choices:
//   * Blob versioning is NOT enabled: it is not available for accounts with a
//     hierarchical namespace (Microsoft Learn, "soft delete vs versioning": "Versioning
//     is not available for HNS-enabled accounts").
//   * Blob and container soft delete ARE enabled (softDeleteDays, default 7). On an
//     HNS account soft delete protects deletes only, not overwrites; hub2lake never
//     overwrites (every write is create-only, If-None-Match: *), so deletes (a seal
//     compaction gone wrong, an operator's rm -r) are exactly what needs protecting.
//   * An optional lifecycle rule moves objects to the Cool tier after coolAfterDays
//     days (0 = no rule). Objects are written once and read by batch loaders, a good
//     fit for Cool after the first days.
//
// Reuse: with createAccount = false the account must already exist (with
// hierarchical namespace); only the container and the role assignments are added,
// and the account's own settings (soft delete, lifecycle) are left as they are.

@description('Storage account name (created, or existing when createAccount is false).')
param name string

@description('Create the account (true) or reuse an existing one (false).')
param createAccount bool = true

param location string
param tags object = {}

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
])
param skuName string = 'Standard_LRS'

@description('Container (file system) that holds the lake.')
param containerName string = 'lake'

@description('Days after last modification before objects move to Cool; 0 = no lifecycle rule.')
@minValue(0)
param coolAfterDays int = 0

@description('Blob and container soft delete retention in days; 0 = off.')
@minValue(0)
@maxValue(365)
param softDeleteDays int = 7

@description('Principal (object) id of the function app identity (writes the lake).')
param identityPrincipalId string

@description('Optional principal (object) id that may read the lake (the deployer); empty = none.')
param readerPrincipalId string = ''

// Built-in roles.
// Storage Blob Data Contributor (read, write, delete blobs), scoped to the lake
// container only; Data Owner would add ACL/ownership management the app never needs.
var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
// Storage Blob Data Reader, for the optional deployer/reader principal.
var storageBlobDataReaderRoleId = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'

resource lakeAccount 'Microsoft.Storage/storageAccounts@2023-05-01' = if (createAccount) {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    isHnsEnabled: true
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
  }
}

resource lakeBlobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = if (createAccount) {
  parent: lakeAccount
  name: 'default'
  properties: {
    // isVersioningEnabled is deliberately absent: not available with hierarchical namespace.
    deleteRetentionPolicy: softDeleteDays > 0
      ? {
          enabled: true
          days: softDeleteDays
        }
      : {
          enabled: false
        }
    containerDeleteRetentionPolicy: softDeleteDays > 0
      ? {
          enabled: true
          days: softDeleteDays
        }
      : {
          enabled: false
        }
  }
}

resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = if (createAccount && coolAfterDays > 0) {
  parent: lakeAccount
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'hub2lake-cool-after-days'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${containerName}/'
              ]
            }
            actions: {
              baseBlob: {
                tierToCool: {
                  daysAfterModificationGreaterThan: coolAfterDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

// The account and blob service as they exist after the conditional creation above
// (or as they already existed): the container and role assignments hang off these.
resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: name
}

resource accountBlobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource lakeContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: accountBlobService
  name: containerName
  properties: {
    publicAccess: 'None'
  }
  dependsOn: [
    lakeAccount
    lakeBlobService
  ]
}

resource lakeWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(lakeContainer.id, identityPrincipalId, storageBlobDataContributorRoleId)
  scope: lakeContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource lakeReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(readerPrincipalId)) {
  name: guid(lakeContainer.id, readerPrincipalId, storageBlobDataReaderRoleId)
  scope: lakeContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReaderRoleId)
    principalId: readerPrincipalId
  }
}

output accountName string = account.name
output containerName string = lakeContainer.name
// abfss://<container>@<account>.dfs.core.windows.net: the form HUB2LAKE_LAKE_URL expects.
output lakeUrl string = 'abfss://${containerName}@${name}.dfs.${environment().suffixes.storage}'
